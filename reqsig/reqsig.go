// Package reqsig owns the signatures of payment requests: the per-merchant
// keys configured in PAYFLOW_MERCHANT_KEYS, and signing and verifying the
// `payflowsig` CloudEvents extension attribute that carries a request's
// signatures.
//
// A signature is "v1," + base64(HMAC-SHA256(key, id + "." + time + "." +
// data)), where id and time are the CloudEvent's attributes as the producer
// wrote them and data is the exact bytes of its `data` member. It is the
// Standard Webhooks construction (package stdwebhook, whose key format and
// comparison it reuses) over a CloudEvent instead of an HTTP request. The
// attribute may hold several space-separated signatures, so a producer can
// sign with the old and the new key while a key is rotated.
//
// What it does not own: which requests need a signature (the worker asks
// Has for the request's merchant) and replay (a replayed event keeps its id,
// and the worker's idempotency makes it a no-op; there is no time window,
// since a request may legitimately wait in Kafka for long).
package reqsig

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/stdwebhook"
)

// Extension is the CloudEvents extension attribute carrying signatures.
const Extension = "payflowsig"

// EnvVar names the configuration.
const EnvVar = "PAYFLOW_MERCHANT_KEYS"

// Errors of Verify. None names a key or an expected signature, so they may
// be logged and put into a rejection's detail.
var (
	ErrMissing  = errors.New("the request carries no " + Extension + " signature")
	ErrMismatch = errors.New("no " + Extension + " signature matches a key configured for the merchant")
	ErrNoKey    = errors.New("no key is configured for the merchant")
)

// Keys are the merchants' signing keys. A nil *Keys names no merchant.
// It is safe for concurrent use.
type Keys struct {
	m map[string][]stdwebhook.Secret
}

// ParseKeys parses PAYFLOW_MERCHANT_KEYS: comma-separated entries
// `merchant_id:whsec_<base64 of the key bytes>`, spaces around entries
// ignored. A merchant named in several entries has several keys, each of
// which verifies: that is how a key is rotated (add the new key, move the
// producer to it, remove the old one). The merchant id is everything
// before the last colon. The empty string configures nothing and returns
// nil. Errors name the entry and the merchant, never a key.
func ParseKeys(s string) (*Keys, error) {
	k := &Keys{m: map[string][]stdwebhook.Secret{}}
	owner := map[string]string{} // key bytes → merchant
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		at := strings.LastIndexByte(entry, ':')
		if at < 0 {
			return nil, fmt.Errorf("reqsig: %s entry %d is not merchant_id:whsec_<base64 key>", EnvVar, i+1)
		}
		m, text := strings.TrimSpace(entry[:at]), strings.TrimSpace(entry[at+1:])
		if err := payflow.ValidID(m); err != nil {
			return nil, fmt.Errorf("reqsig: %s entry %d: merchant id %s", EnvVar, i+1, err)
		}
		key, err := stdwebhook.ParseSecret(text)
		if err != nil {
			return nil, fmt.Errorf("reqsig: %s entry %d (merchant %q): %w", EnvVar, i+1, m, err)
		}
		if other, dup := owner[string(key)]; dup {
			if other == m {
				return nil, fmt.Errorf("reqsig: %s entry %d gives merchant %q the same key twice", EnvVar, i+1, m)
			}
			// One key for two merchants would let either sign the other's
			// requests.
			return nil, fmt.Errorf("reqsig: %s gives merchants %q and %q the same key", EnvVar, other, m)
		}
		owner[string(key)] = m
		k.m[m] = append(k.m[m], key)
	}
	if len(k.m) == 0 {
		if strings.TrimSpace(s) != "" {
			return nil, fmt.Errorf("reqsig: %s holds no entry", EnvVar)
		}
		return nil, nil
	}
	return k, nil
}

// Has reports whether the merchant's requests must be signed.
func (k *Keys) Has(merchant string) bool {
	if k == nil {
		return false
	}
	_, ok := k.m[merchant]
	return ok
}

// Merchants returns the merchants named, sorted, for a start-up log line.
func (k *Keys) Merchants() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, len(k.m))
	for m := range k.m {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Verify checks that one of the space-separated signatures in sigs (the
// payflowsig attribute as sent) signs (id, time, data) with one of the
// merchant's keys. time is the attribute as the producer wrote it, data the
// exact bytes of the `data` member. Comparisons take constant time.
func (k *Keys) Verify(merchant, id, time string, data []byte, sigs string) error {
	if !k.Has(merchant) {
		return ErrNoKey
	}
	if strings.TrimSpace(sigs) == "" {
		return ErrMissing
	}
	if !stdwebhook.Match(k.m[merchant], id, time, data, sigs) {
		return ErrMismatch
	}
	return nil
}

// String keeps the keys out of anything that prints a *Keys.
func (k *Keys) String() string {
	return fmt.Sprintf("reqsig.Keys{%d merchants}", len(k.Merchants()))
}

// GoString does the same for %#v.
func (k *Keys) GoString() string { return k.String() }

// Sign returns the "v1,<base64>" signature of a request with the given id,
// time attribute (as written) and data bytes.
func Sign(key stdwebhook.Secret, id, time string, data []byte) string {
	return stdwebhook.SignText(key, id, time, data)
}

// SignEvent is the producer's helper: it returns the request event value
// with a payflowsig attribute holding one signature per key (several during
// a rotation), computed over the id, time and data bytes exactly as they
// appear in value. value must be a request event without a payflowsig.
func SignEvent(value []byte, keys ...stdwebhook.Secret) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("reqsig: no key to sign with")
	}
	env, err := events.Decode(value)
	if err != nil {
		return nil, err
	}
	if env.Signature != "" {
		return nil, errors.New("reqsig: the event is signed already")
	}
	sigs := make([]string, len(keys))
	for i, key := range keys {
		sigs[i] = Sign(key, env.ID, env.TimeText, env.Data)
	}
	body := bytes.TrimRight(value, " \t\r\n")
	if len(body) == 0 || body[len(body)-1] != '}' {
		return nil, errors.New("reqsig: the event is not a JSON object")
	}
	out := make([]byte, 0, len(body)+64*len(keys))
	out = append(out, body[:len(body)-1]...)
	out = append(out, `,"`+Extension+`":"`+strings.Join(sigs, " ")+`"}`...)
	return out, nil
}
