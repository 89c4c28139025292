package stdwebhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

func mustSecret(t testing.TB, s string) stdwebhook.Secret {
	t.Helper()
	sec, err := stdwebhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func verifier(t *testing.T, secrets string) *stdwebhook.Verifier {
	t.Helper()
	s, err := stdwebhook.ParseSecrets(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return &stdwebhook.Verifier{Secrets: s, Now: func() time.Time { return now }}
}

// The vector published with the spec (and used by its reference libraries):
// payflow's signatures must interoperate with every other implementation.
func TestPublishedVector(t *testing.T) {
	const (
		sec  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts   = 1614265330
		want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	payload := []byte(`{"test": 2432232314}`)
	if got := stdwebhook.Sign(mustSecret(t, sec), id, time.Unix(ts, 0), payload); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	v := verifier(t, sec)
	v.Now = func() time.Time { return time.Unix(ts+10, 0) }
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", fmt.Sprint(ts))
	h.Set("webhook-signature", want)
	if got, err := v.Verify(h, payload); err != nil || got != id {
		t.Fatalf("Verify = %q, %v", got, err)
	}
}

// The signature computed from the spec's definition, independently of Sign.
func TestSignMatchesTheSpec(t *testing.T) {
	h := hmac.New(sha256.New, raw)
	h.Write([]byte("msg_1.1700000000." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
	if got := stdwebhook.Sign(mustSecret(t, secret), "msg_1", now, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	hs := stdwebhook.Headers(mustSecret(t, secret), "msg_1", now, body)
	if hs.Get("webhook-id") != "msg_1" || hs.Get("webhook-timestamp") != "1700000000" || hs.Get("webhook-signature") != want {
		t.Fatalf("Headers = %v", hs)
	}
}

func TestVerify(t *testing.T) {
	sec := mustSecret(t, secret)
	other := stdwebhook.NewSecret()
	otherSec := mustSecret(t, other)
	good := stdwebhook.Headers(sec, "msg_1", now, body)
	goodSig := good.Get("webhook-signature")
	with := func(k, v string) http.Header { h := good.Clone(); h.Set(k, v); return h }
	without := func(k string) http.Header { h := good.Clone(); h.Del(k); return h }
	cases := []struct {
		name    string
		secrets string
		h       http.Header
		body    []byte
		want    error
	}{
		{"valid", secret, good, body, nil},
		{"rotation: new secret first", other + " " + secret, good, body, nil},
		{"rotation: comma separated", secret + "," + other, good, body, nil},
		{"several signatures, the valid one last", secret, with("webhook-signature", "v1,AAAA v2,xyz "+goodSig), body, nil},
		{"several signatures, the valid one first", secret, with("webhook-signature", goodSig+" v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32))), body, nil},
		{"signatures split over header lines", secret, func() http.Header {
			h := good.Clone()
			h.Set("webhook-signature", "v1,AAAA")
			h.Add("webhook-signature", goodSig)
			return h
		}(), body, nil},
		{"within tolerance in the past", secret, stdwebhook.Headers(sec, "msg_1", now.Add(-4*time.Minute), body), body, nil},
		{"within tolerance in the future", secret, stdwebhook.Headers(sec, "msg_1", now.Add(4*time.Minute), body), body, nil},
		{"wrong secret", other, good, body, stdwebhook.ErrNoMatchingSignature},
		{"tampered body", secret, good, []byte(`{"bill_id":"b1","status":"paid","amount":1}`), stdwebhook.ErrNoMatchingSignature},
		{"body with a trailing newline", secret, good, append(append([]byte{}, body...), '\n'), stdwebhook.ErrNoMatchingSignature},
		{"other id", secret, with("webhook-id", "msg_2"), body, stdwebhook.ErrNoMatchingSignature},
		{"timestamp moved within tolerance", secret, with("webhook-timestamp", "1700000001"), body, stdwebhook.ErrNoMatchingSignature},
		{"signed by another secret", secret, stdwebhook.Headers(otherSec, "msg_1", now, body), body, stdwebhook.ErrNoMatchingSignature},
		{"valid signature under an unknown version", secret, with("webhook-signature", "v1a,"+goodSig[3:]), body, stdwebhook.ErrNoMatchingSignature},
		{"signature without version", secret, with("webhook-signature", goodSig[3:]), body, stdwebhook.ErrNoMatchingSignature},
		{"signature not base64", secret, with("webhook-signature", "v1,!!!notbase64!!!"), body, stdwebhook.ErrNoMatchingSignature},
		{"truncated signature", secret, with("webhook-signature", goodSig[:len(goodSig)-8]), body, stdwebhook.ErrNoMatchingSignature},
		{"stale", secret, stdwebhook.Headers(sec, "msg_1", now.Add(-6*time.Minute), body), body, stdwebhook.ErrStaleTimestamp},
		{"future", secret, stdwebhook.Headers(sec, "msg_1", now.Add(6*time.Minute), body), body, stdwebhook.ErrStaleTimestamp},
		{"absurd timestamp", secret, with("webhook-timestamp", "-9223372036854775808"), body, stdwebhook.ErrStaleTimestamp},
		{"timestamp in milliseconds", secret, with("webhook-timestamp", "1700000000000"), body, stdwebhook.ErrStaleTimestamp},
		{"timestamp not a number", secret, with("webhook-timestamp", "yesterday"), body, stdwebhook.ErrBadTimestamp},
		{"timestamp as a date", secret, with("webhook-timestamp", now.Format(time.RFC3339)), body, stdwebhook.ErrBadTimestamp},
		{"timestamp overflowing", secret, with("webhook-timestamp", "99999999999999999999"), body, stdwebhook.ErrBadTimestamp},
		{"missing signature", secret, without("webhook-signature"), body, stdwebhook.ErrMissingHeaders},
		{"blank signature", secret, with("webhook-signature", "   "), body, stdwebhook.ErrMissingHeaders},
		{"missing id", secret, without("webhook-id"), body, stdwebhook.ErrMissingHeaders},
		{"missing timestamp", secret, without("webhook-timestamp"), body, stdwebhook.ErrMissingHeaders},
		{"no headers", secret, http.Header{}, body, stdwebhook.ErrMissingHeaders},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := verifier(t, c.secrets).Verify(c.h, c.body)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err == nil && id != c.h.Get("webhook-id") {
				t.Fatalf("id = %q", id)
			}
			if err != nil && id != "" {
				t.Fatalf("a rejected webhook returned id %q", id)
			}
		})
	}
}

func TestToleranceIsConfigurable(t *testing.T) {
	v := verifier(t, secret)
	v.Tolerance = 30 * time.Second
	h := stdwebhook.Headers(mustSecret(t, secret), "msg_1", now.Add(-time.Minute), body)
	if _, err := v.Verify(h, body); !errors.Is(err, stdwebhook.ErrStaleTimestamp) {
		t.Fatalf("a minute-old webhook under a 30 s tolerance: %v", err)
	}
	v.Tolerance = 2 * time.Minute
	if _, err := v.Verify(h, body); err != nil {
		t.Fatalf("a minute-old webhook under a 2 min tolerance: %v", err)
	}
}

func TestNoSecretsVerifiesNothing(t *testing.T) {
	v := &stdwebhook.Verifier{Now: func() time.Time { return now }}
	if _, err := v.Verify(stdwebhook.Headers(mustSecret(t, secret), "msg_1", now, body), body); !errors.Is(err, stdwebhook.ErrNoMatchingSignature) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSecrets(t *testing.T) {
	a, b := stdwebhook.NewSecret(), stdwebhook.NewSecret()
	for _, in := range []string{a + " " + b, a + "," + b, " " + a + " ,  " + b + " "} {
		got, err := stdwebhook.ParseSecrets(in)
		if err != nil || len(got) != 2 {
			t.Fatalf("ParseSecrets(%q) = %d secrets, %v", in, len(got), err)
		}
		if string(got[0]) != string(mustSecret(t, a)) || string(got[1]) != string(mustSecret(t, b)) {
			t.Fatal("secrets out of order or mangled")
		}
	}
	unpadded := strings.TrimRight(secret, "=")
	if got, err := stdwebhook.ParseSecret(unpadded); err != nil || string(got) != string(raw) {
		t.Fatalf("unpadded secret: %v", err)
	}
	for _, in := range []string{"", " , ", a + " nope", "whsec_!!!"} {
		if _, err := stdwebhook.ParseSecrets(in); err == nil {
			t.Errorf("ParseSecrets(%q) accepted", in)
		}
	}
}

func TestParseSecretRejectsMalformed(t *testing.T) {
	rawSecret := base64.StdEncoding.EncodeToString(raw)
	for _, s := range []string{"", "secret", rawSecret, "WHSEC_" + rawSecret, "whsec_", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		_, err := stdwebhook.ParseSecret(s)
		if err == nil {
			t.Errorf("ParseSecret(%q) accepted", s)
			continue
		}
		if len(s) > 8 && strings.Contains(err.Error(), s[6:]) {
			t.Errorf("error %q repeats the secret", err)
		}
	}
}

// A secret printed by accident (a config dump, a %v in a log line) must not
// show the key.
func TestSecretsDoNotPrint(t *testing.T) {
	sec := mustSecret(t, secret)
	v := &stdwebhook.Verifier{Secrets: []stdwebhook.Secret{sec}}
	enc := base64.StdEncoding.EncodeToString(raw)
	for _, s := range []string{fmt.Sprint(sec), fmt.Sprintf("%v %s %#v %x", sec, sec, sec, sec), fmt.Sprint(v), fmt.Sprintf("%+v", *v)} {
		if strings.Contains(s, string(raw)) || strings.Contains(s, enc) || strings.Contains(s, fmt.Sprintf("%x", raw)) || strings.Contains(s, "48 49 50") {
			t.Fatalf("printed the key: %s", s)
		}
	}
}

func TestNewSecretIsFreshAndParses(t *testing.T) {
	a, b := stdwebhook.NewSecret(), stdwebhook.NewSecret()
	if a == b {
		t.Fatal("NewSecret repeated itself")
	}
	if s := mustSecret(t, a); len(s) != 32 {
		t.Fatalf("len = %d", len(s))
	}
}

func FuzzVerify(f *testing.F) {
	sec := mustSecret(f, secret)
	good := stdwebhook.Headers(sec, "msg_1", now, body)
	f.Add("msg_1", good.Get("webhook-timestamp"), good.Get("webhook-signature"), body)
	f.Add("", "", "", []byte{})
	f.Add("x", "-99999999999999999999", "v1, v1,,,", []byte("{"))
	f.Add("msg_1", "1700000000", "v1,"+strings.Repeat("A", 44)+" v2,abc", []byte("x"))
	v := &stdwebhook.Verifier{Secrets: []stdwebhook.Secret{sec}, Now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, id, ts, sig string, b []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		got, err := v.Verify(h, b)
		if err != nil {
			return
		}
		// Anything accepted carries a valid signature for exactly this id,
		// timestamp and body: changing any of them must be rejected.
		if got != id {
			t.Fatalf("returned id %q for %q", got, id)
		}
		if _, err := v.Verify(h, append(append([]byte{}, b...), 'x')); err == nil {
			t.Fatal("accepted a different body under the same signature")
		}
		h2 := h.Clone()
		h2.Set("webhook-id", id+"x")
		if _, err := v.Verify(h2, b); err == nil {
			t.Fatal("accepted a different id under the same signature")
		}
	})
}
