package stdwebhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/payflow/payflow/stdwebhook"
)

var (
	now    = time.Unix(1_700_000_000, 0)
	raw    = []byte("0123456789abcdef0123456789abcdef")
	secret = "whsec_" + base64.StdEncoding.EncodeToString(raw)
	body   = []byte(`{"bill_id":"b1","status":"paid","amount":5000}`)
)

func verifier(t *testing.T, secrets string) *stdwebhook.Verifier {
	t.Helper()
	s, err := stdwebhook.ParseSecrets(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return &stdwebhook.Verifier{Secrets: s, Now: func() time.Time { return now }}
}

// The signature computed from the spec's definition, independently of Sign.
func TestSignMatchesTheSpec(t *testing.T) {
	h := hmac.New(sha256.New, raw)
	h.Write([]byte("msg_1.1700000000." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
	sec, _ := stdwebhook.ParseSecret(secret)
	if got := stdwebhook.Sign(sec, "msg_1", now, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	sec, _ := stdwebhook.ParseSecret(secret)
	other := stdwebhook.NewSecret()
	otherSec, _ := stdwebhook.ParseSecret(other)
	good := stdwebhook.Headers(sec, "msg_1", now, body)
	with := func(k, v string) http.Header { h := good.Clone(); h.Set(k, v); return h }
	cases := []struct {
		name    string
		secrets string
		h       http.Header
		body    []byte
		want    error
	}{
		{"valid", secret, good, body, nil},
		{"rotation: old and new secret configured", other + " " + secret, good, body, nil},
		{"several signatures, one valid", secret, with("webhook-signature", "v1,AAAA v2,xyz "+good.Get("webhook-signature")), body, nil},
		{"wrong secret", other, good, body, stdwebhook.ErrNoMatchingSignature},
		{"tampered body", secret, good, []byte(`{"bill_id":"b1","status":"paid","amount":1}`), stdwebhook.ErrNoMatchingSignature},
		{"other id", secret, with("webhook-id", "msg_2"), body, stdwebhook.ErrNoMatchingSignature},
		{"stale", secret, stdwebhook.Headers(sec, "msg_1", now.Add(-6*time.Minute), body), body, stdwebhook.ErrStaleTimestamp},
		{"future", secret, stdwebhook.Headers(sec, "msg_1", now.Add(6*time.Minute), body), body, stdwebhook.ErrStaleTimestamp},
		{"bad timestamp", secret, with("webhook-timestamp", "yesterday"), body, stdwebhook.ErrBadTimestamp},
		{"missing signature", secret, with("webhook-signature", ""), body, stdwebhook.ErrMissingHeaders},
		{"signed by another secret", secret, stdwebhook.Headers(otherSec, "msg_1", now, body), body, stdwebhook.ErrNoMatchingSignature},
		{"unknown version only", secret, with("webhook-signature", "v1a,"+good.Get("webhook-signature")[3:]), body, stdwebhook.ErrNoMatchingSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := verifier(t, c.secrets).Verify(c.h, c.body)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err == nil && id != c.h.Get("webhook-id") {
				t.Fatalf("id = %q", id)
			}
		})
	}
}

func TestParseSecretRejectsMalformed(t *testing.T) {
	for _, s := range []string{"", "secret", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := stdwebhook.ParseSecret(s); err == nil {
			t.Errorf("ParseSecret(%q) accepted", s)
		}
	}
}

func FuzzVerify(f *testing.F) {
	sec, _ := stdwebhook.ParseSecret(secret)
	good := stdwebhook.Headers(sec, "msg_1", now, body)
	f.Add("msg_1", good.Get("webhook-timestamp"), good.Get("webhook-signature"), body)
	f.Add("", "", "", []byte{})
	f.Add("x", "-99999999999999999999", "v1, v1,,,", []byte("{"))
	v := &stdwebhook.Verifier{Secrets: []stdwebhook.Secret{sec}, Now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, id, ts, sig string, b []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		got, err := v.Verify(h, b)
		if err == nil && (got != id || stdwebhook.Sign(sec, id, now, b) == "") {
			t.Fatalf("accepted %q", id)
		}
		// Anything accepted must carry a valid signature for exactly this body.
		if err == nil {
			if _, err2 := v.Verify(h, append(b, 'x')); err2 == nil {
				t.Fatal("accepted a different body under the same signature")
			}
		}
	})
}
