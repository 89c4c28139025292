package reqsig_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/stdwebhook"
)

// The key bytes are the text "payflow-test-key-0123456789abcdef".
const (
	keyText = "whsec_cGF5Zmxvdy10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"
	keyRaw  = "payflow-test-key-0123456789abcdef"
	// Computed outside Go:
	//   printf '%s' 'evt-1.2024-05-01T10:00:00.000Z.{"merchant_id":"m1","amount":1000}' |
	//     openssl dgst -sha256 -mac HMAC -macopt hexkey:<hex of keyRaw> -binary | base64
	vectorID   = "evt-1"
	vectorTime = "2024-05-01T10:00:00.000Z"
	vectorData = `{"merchant_id":"m1","amount":1000}`
	vectorSig  = "v1,AilJ7XnZBgCatrsFQhPBvZ2x2O44KEqJYO+3LhvOEFs="
)

func mustKey(t *testing.T, s string) stdwebhook.Secret {
	t.Helper()
	k, err := stdwebhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignFixedVector(t *testing.T) {
	if got := reqsig.Sign(mustKey(t, keyText), vectorID, vectorTime, []byte(vectorData)); got != vectorSig {
		t.Fatalf("Sign = %s, want %s", got, vectorSig)
	}
	// And computed here from the definition, for any input.
	mac := hmac.New(sha256.New, []byte(keyRaw))
	fmt.Fprintf(mac, "%s.%s.%s", "id-2", "2025-01-02T03:04:05.678+09:00", `{"a": 1}`)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := reqsig.Sign(mustKey(t, keyText), "id-2", "2025-01-02T03:04:05.678+09:00", []byte(`{"a": 1}`)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestSignVerifyFixedVector(t *testing.T) {
	k, err := reqsig.ParseKeys("m1:" + keyText)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Verify("m1", vectorID, vectorTime, []byte(vectorData), vectorSig); err != nil {
		t.Fatalf("Verify(vector) = %v", err)
	}
	// Every input is covered: change any and the signature fails.
	for name, c := range map[string][4]string{
		"id":             {"evt-2", vectorTime, vectorData, vectorSig},
		"time":           {vectorID, "2024-05-01T10:00:00Z", vectorData, vectorSig},
		"data amount":    {vectorID, vectorTime, `{"merchant_id":"m1","amount":9000}`, vectorSig},
		"data spacing":   {vectorID, vectorTime, `{"merchant_id": "m1","amount":1000}`, vectorSig},
		"forged":         {vectorID, vectorTime, vectorData, "v1,BilJ7XnZBgCatrsFQhPBvZ2x2O44KEqJYO+3LhvOEFs="},
		"other version":  {vectorID, vectorTime, vectorData, "v2," + strings.TrimPrefix(vectorSig, "v1,")},
		"not base64":     {vectorID, vectorTime, vectorData, "v1,@@@"},
		"bare signature": {vectorID, vectorTime, vectorData, strings.TrimPrefix(vectorSig, "v1,")},
	} {
		if err := k.Verify("m1", c[0], c[1], []byte(c[2]), c[3]); !errors.Is(err, reqsig.ErrMismatch) {
			t.Errorf("%s: Verify = %v, want ErrMismatch", name, err)
		}
	}
	for _, missing := range []string{"", "  "} {
		if err := k.Verify("m1", vectorID, vectorTime, []byte(vectorData), missing); !errors.Is(err, reqsig.ErrMissing) {
			t.Errorf("Verify(%q) = %v, want ErrMissing", missing, err)
		}
	}
	if err := k.Verify("m2", vectorID, vectorTime, []byte(vectorData), vectorSig); !errors.Is(err, reqsig.ErrNoKey) {
		t.Errorf("Verify(unkeyed merchant) = %v, want ErrNoKey", err)
	}
}

func TestSignRotationSeveralKeysAndSignatures(t *testing.T) {
	oldKey, newKey := stdwebhook.NewSecret(), stdwebhook.NewSecret()
	both, err := reqsig.ParseKeys(" m1:" + oldKey + " , m2:" + stdwebhook.NewSecret() + ",m1:" + newKey + " ")
	if err != nil {
		t.Fatal(err)
	}
	newOnly, err := reqsig.ParseKeys("m1:" + newKey)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"x":1}`)
	byOld := reqsig.Sign(mustKey(t, oldKey), "e", "t", data)
	byNew := reqsig.Sign(mustKey(t, newKey), "e", "t", data)
	for name, sig := range map[string]string{"old": byOld, "new": byNew, "both": byOld + " " + byNew, "junk then new": "v1,AAAA " + byNew} {
		if err := both.Verify("m1", "e", "t", data, sig); err != nil {
			t.Errorf("both keys configured, signed with %s: %v", name, err)
		}
	}
	if err := newOnly.Verify("m1", "e", "t", data, byOld); !errors.Is(err, reqsig.ErrMismatch) {
		t.Errorf("old key removed, signed with old: %v, want ErrMismatch", err)
	}
	// m2's key does not sign for m1.
	if err := both.Verify("m2", "e", "t", data, byOld); !errors.Is(err, reqsig.ErrMismatch) {
		t.Errorf("m1's signature for m2: %v, want ErrMismatch", err)
	}
}

func TestSignParseKeys(t *testing.T) {
	if k, err := reqsig.ParseKeys(""); k != nil || err != nil {
		t.Fatalf(`ParseKeys("") = %v, %v; want off`, k, err)
	}
	k, err := reqsig.ParseKeys("shop:a:" + keyText)
	if err != nil || !k.Has("shop:a") || k.Has("shop") {
		t.Fatalf("merchant id with a colon: %v %v", k, err)
	}
	if got := fmt.Sprintf("%v %+v %#v %s", k, k, k, k); strings.Contains(got, "cGF5") {
		t.Fatalf("keys print: %s", got)
	}
	other := stdwebhook.NewSecret()
	for name, s := range map[string]string{
		"no colon":           keyText,
		"no merchant":        ":" + keyText,
		"merchant has space": "m 1:" + keyText,
		"raw key":            "m1:" + keyRaw,
		"short key":          "m1:whsec_" + base64.StdEncoding.EncodeToString([]byte("short")),
		"same key twice":     "m1:" + keyText + ",m1:" + keyText,
		"shared key":         "m1:" + keyText + ",m2:" + keyText,
		"only commas":        " , ,",
		"second entry bad":   "m1:" + other + ",m2:whsec_%%%",
	} {
		k, err := reqsig.ParseKeys(s)
		if err == nil {
			t.Errorf("%s: ParseKeys accepted %v", name, k)
			continue
		}
		if strings.Contains(err.Error(), strings.TrimPrefix(keyText, "whsec_")) || strings.Contains(err.Error(), keyRaw) ||
			strings.Contains(err.Error(), strings.TrimPrefix(other, "whsec_")) {
			t.Errorf("%s: error quotes a key: %v", name, err)
		}
	}
}

func TestSignEventProducerHelper(t *testing.T) {
	key := mustKey(t, keyText)
	value := []byte(`{"specversion":"1.0","id":"evt-1","source":"shop","type":"payment.charge.requested",` +
		`"time":"2024-05-01T10:00:00.000Z","data":{"merchant_id":"m1","amount":1000}}` + "\n")
	signed, err := reqsig.SignEvent(value, key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.Decode(signed)
	if err != nil {
		t.Fatal(err)
	}
	if env.Signature != vectorSig {
		t.Fatalf("payflowsig = %q, want the fixed vector %q", env.Signature, vectorSig)
	}
	if _, err := reqsig.SignEvent(signed, key); err == nil {
		t.Fatal("signing a signed event again succeeded")
	}
	two, err := reqsig.SignEvent(value, key, mustKey(t, stdwebhook.NewSecret()))
	if err != nil {
		t.Fatal(err)
	}
	if env, _ := events.Decode(two); len(strings.Fields(env.Signature)) != 2 {
		t.Fatalf("two keys, payflowsig = %q", env.Signature)
	}
}
