// Package stdwebhook signs and verifies webhooks per the Standard Webhooks
// specification (standardwebhooks.com): headers webhook-id,
// webhook-timestamp and webhook-signature, the signature being
// "v1," + base64(HMAC-SHA256(secret, id + "." + timestamp + "." + body)).
// The PG simulator signs with it; payflow's receiver verifies with it.
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
)

// Header names of the spec.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret's text form.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a timestamp may be from now, either way.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify. None reveals which secret or signature was tried.
var (
	ErrMissingHeaders      = errors.New("stdwebhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrBadTimestamp        = errors.New("stdwebhook: webhook-timestamp is not a Unix time")
	ErrStaleTimestamp      = errors.New("stdwebhook: webhook-timestamp is outside the tolerance")
	ErrNoMatchingSignature = errors.New("stdwebhook: no matching signature")
)

// Secret is a decoded signing key.
type Secret []byte

// ParseSecret decodes "whsec_" + base64.
func ParseSecret(s string) (Secret, error) {
	if !strings.HasPrefix(s, SecretPrefix) {
		return nil, errors.New("stdwebhook: secret must start with " + SecretPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(s[len(SecretPrefix):])
	if err != nil || len(b) < 16 || len(b) > 64 {
		return nil, errors.New("stdwebhook: secret must be whsec_ followed by base64 of 16 to 64 bytes")
	}
	return b, nil
}

// ParseSecrets decodes several secrets separated by spaces or commas: during
// a rotation both the old and the new one are accepted.
func ParseSecrets(s string) ([]Secret, error) {
	var out []Secret
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		sec, err := ParseSecret(f)
		if err != nil {
			return nil, err
		}
		out = append(out, sec)
	}
	if len(out) == 0 {
		return nil, errors.New("stdwebhook: no secret configured")
	}
	return out, nil
}

// NewSecret returns a fresh random secret in its text form.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// Sign returns the "v1,<base64>" signature of a message.
func Sign(secret Secret, msgID string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, msgID, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(secret Secret, msgID, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Headers returns the three headers a sender sets.
func Headers(secret Secret, msgID string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(secret, msgID, ts, body))
	return h
}

// Verifier checks incoming webhooks.
type Verifier struct {
	Secrets   []Secret
	Tolerance time.Duration    // DefaultTolerance when zero
	Now       func() time.Time // time.Now when nil
}

// Verify checks the headers and body and returns the webhook id, the
// message's idempotency key.
func (v *Verifier) Verify(h http.Header, body []byte) (string, error) {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
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
	if tol == 0 {
		tol = DefaultTolerance
	}
	if d := now().Sub(time.Unix(sec, 0)); d > tol || d < -tol {
		return "", ErrStaleTimestamp
	}
	for _, secret := range v.Secrets {
		want := mac(secret, id, ts, body)
		for _, s := range strings.Fields(sigs) {
			version, sig, ok := strings.Cut(s, ",")
			if !ok || version != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(sig)
			if err == nil && hmac.Equal(got, want) {
				return id, nil
			}
		}
	}
	return "", ErrNoMatchingSignature
}

// String hides the secrets if a Verifier is ever printed.
func (v *Verifier) String() string {
	return fmt.Sprintf("stdwebhook.Verifier{%d secrets}", len(v.Secrets))
}
