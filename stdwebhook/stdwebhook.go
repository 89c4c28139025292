// Package stdwebhook owns the signing and verification of webhooks per the
// Standard Webhooks specification (www.standardwebhooks.com): the headers
// webhook-id, webhook-timestamp and webhook-signature, the signature being
// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)) keyed
// with the decoded bytes of a "whsec_" secret. The PG simulator signs with
// it; payflow's callback receiver verifies with it.
//
// Several secrets may be configured at once so that a secret can be rotated
// without rejecting webhooks signed with the old one in the meantime, and a
// sender may put several signatures in one header for the same reason.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/payflow/payflow/internal/mutation"
)

// Header names of the spec.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret's text form.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a timestamp may be from now, either way: the
// spec's recommendation, and what bounds how long a captured webhook can be
// replayed.
const DefaultTolerance = 5 * time.Minute

// MinSecretBytes is the shortest key accepted. The spec recommends 24 to 64
// bytes; anything shorter than 16 is a configuration mistake, not a key.
const MinSecretBytes = 16

// Errors of Verify. None reveals which secret or signature was tried, so a
// caller may log them.
var (
	ErrMissingHeaders      = errors.New("stdwebhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrBadTimestamp        = errors.New("stdwebhook: webhook-timestamp is not a Unix time in seconds")
	ErrStaleTimestamp      = errors.New("stdwebhook: webhook-timestamp is outside the tolerance")
	ErrNoMatchingSignature = errors.New("stdwebhook: no matching signature")
)

// Secret is a decoded signing key.
type Secret []byte

// String keeps a key out of logs and error messages that format it by
// accident.
func (s Secret) String() string { return "stdwebhook.Secret(redacted)" }

// GoString does the same for %#v.
func (s Secret) GoString() string { return s.String() }

// ParseSecret decodes "whsec_" + base64 of the key bytes. A secret without
// the prefix is refused rather than guessed at: a raw string used as the key
// would verify nothing the sender signed.
func ParseSecret(s string) (Secret, error) {
	if !strings.HasPrefix(s, SecretPrefix) {
		return nil, errors.New("stdwebhook: a secret must start with " + SecretPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(s[len(SecretPrefix):])
	if err != nil {
		// Some senders drop the padding; the key is the same.
		b, err = base64.RawStdEncoding.DecodeString(s[len(SecretPrefix):])
	}
	if err != nil || len(b) < MinSecretBytes {
		return nil, fmt.Errorf("stdwebhook: a secret must be %s followed by the base64 of at least %d bytes", SecretPrefix, MinSecretBytes)
	}
	return b, nil
}

// ParseSecrets decodes several secrets separated by spaces or commas. During
// a rotation both the old and the new one are configured, and a webhook
// signed with either is accepted.
func ParseSecrets(s string) ([]Secret, error) {
	var out []Secret
	for i, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' }) {
		sec, err := ParseSecret(f)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		out = append(out, sec)
	}
	if len(out) == 0 {
		return nil, errors.New("stdwebhook: no secret configured")
	}
	return out, nil
}

// NewSecret returns a fresh random 32-byte secret in its text form.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// Sign returns the "v1,<base64>" signature of a message sent at ts.
func Sign(secret Secret, msgID string, ts time.Time, body []byte) string {
	return SignText(secret, msgID, strconv.FormatInt(ts.Unix(), 10), body)
}

// SignText returns the "v1,<base64>" signature of a message whose
// timestamp is written as ts. Schemes that sign the same construction over
// a timestamp of another form (payflow's signed requests sign a CloudEvent's
// RFC 3339 time) use it and Match rather than a copy of them.
func SignText(secret Secret, msgID, ts string, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, msgID, ts, body))
}

// mac signs the timestamp as it appears in the header, so a verifier never
// re-formats what the sender wrote.
func mac(secret Secret, msgID, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Headers returns the three headers a sender sets. A sender retrying a
// notification keeps msgID (the receiver's idempotency key) and signs again
// with the time of the new attempt.
func Headers(secret Secret, msgID string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(secret, msgID, ts, body))
	return h
}

// Verifier checks incoming webhooks. It is safe for concurrent use once
// configured.
type Verifier struct {
	Secrets   []Secret
	Tolerance time.Duration    // DefaultTolerance when zero
	Now       func() time.Time // time.Now when nil
}

// Verify checks the headers against the body and returns the webhook id, the
// message's idempotency key. Signatures of versions other than v1 are
// ignored, as the spec asks, so that a sender can add a new scheme before
// every receiver knows it.
func (v *Verifier) Verify(h http.Header, body []byte) (string, error) {
	id, ts := h.Get(HeaderID), h.Get(HeaderTimestamp)
	// A proxy may split one header into several lines; the list is the same.
	sigs := strings.Join(h.Values(HeaderSignature), " ")
	if id == "" || ts == "" || strings.TrimSpace(sigs) == "" {
		return "", ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrBadTimestamp
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	// Compare in seconds: converting an absurd timestamp to a time.Time and
	// subtracting would saturate rather than fail, which is correct but
	// hard to reason about.
	if d := now().Unix() - sec; d > int64(tol/time.Second) || d < -int64(tol/time.Second) {
		return "", ErrStaleTimestamp
	}
	if Match(v.Secrets, id, ts, body, sigs) || mutation.On("unsigned") {
		return id, nil
	}
	return "", ErrNoMatchingSignature
}

// Match reports whether one of the space-separated signatures in sigs is
// the v1 signature of (msgID, ts, body) under one of secrets. Signatures
// of other versions and malformed ones are ignored; each comparison takes
// constant time.
func Match(secrets []Secret, msgID, ts string, body []byte, sigs string) bool {
	var candidates [][]byte
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		if got, err := base64.StdEncoding.DecodeString(sig); err == nil {
			candidates = append(candidates, got)
		}
	}
	for _, secret := range secrets {
		want := mac(secret, msgID, ts, body)
		for _, got := range candidates {
			if hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// String hides the secrets if a Verifier is ever printed.
func (v *Verifier) String() string {
	return fmt.Sprintf("stdwebhook.Verifier{%d secrets}", len(v.Secrets))
}
