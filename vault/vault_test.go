package vault_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/payflow/payflow/vault"
)

func mustNew(t *testing.T, key string, old ...string) *vault.Vault {
	t.Helper()
	v, err := vault.NewWithOld(key, old...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSealOpenRoundTrip(t *testing.T) {
	v := mustNew(t, vault.GenerateKey())
	for _, pt := range []string{"bk_secret_1234", "", strings.Repeat("x", 4096)} {
		sealed, err := v.Seal([]byte(pt), []byte("row-1"))
		if err != nil {
			t.Fatal(err)
		}
		if pt != "" && bytes.Contains(sealed, []byte(pt)) {
			t.Fatal("plaintext visible in the sealed value")
		}
		got, err := v.Open(sealed, []byte("row-1"))
		if err != nil || string(got) != pt {
			t.Fatalf("open: %q, %v; want %q", got, err, pt)
		}
	}
}

func TestLayout(t *testing.T) {
	v := mustNew(t, vault.GenerateKey())
	sealed, _ := v.Seal([]byte("12345"), []byte("r"))
	if want := 1 + 1 + 12 + 5 + 16; len(sealed) != want {
		t.Fatalf("sealed length %d, want %d (version, key id, nonce, ciphertext, tag)", len(sealed), want)
	}
	if sealed[0] != 1 {
		t.Fatalf("version byte %d, want 1", sealed[0])
	}
	again, _ := v.Seal([]byte("12345"), []byte("r"))
	if again[1] != sealed[1] {
		t.Fatal("the key id changed between two seals with the same key")
	}
	if bytes.Equal(again[2:14], sealed[2:14]) || bytes.Equal(again, sealed) {
		t.Fatal("two seals reused a nonce")
	}
}

func TestTamperingIsDetected(t *testing.T) {
	v := mustNew(t, vault.GenerateKey())
	sealed, _ := v.Seal([]byte("bk_secret"), []byte("row-1"))
	// Every byte matters: header, nonce, ciphertext and tag.
	for i := range sealed {
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 0x01
		if pt, err := v.Open(tampered, []byte("row-1")); !errors.Is(err, vault.ErrOpen) && !(i == 1 && errors.Is(err, vault.ErrUnknownKey)) {
			t.Fatalf("flipping byte %d: opened %q, err %v", i, pt, err)
		}
	}
	for _, short := range [][]byte{nil, {}, sealed[:1], sealed[:2], sealed[:14], sealed[:len(sealed)-1]} {
		if _, err := v.Open(short, []byte("row-1")); !errors.Is(err, vault.ErrOpen) {
			t.Fatalf("a truncated value (%d bytes) opened: %v", len(short), err)
		}
	}
	if _, err := v.Open(append(bytes.Clone(sealed), 0), []byte("row-1")); !errors.Is(err, vault.ErrOpen) {
		t.Fatal("a value with a trailing byte opened")
	}
}

func TestWrongAAD(t *testing.T) {
	v := mustNew(t, vault.GenerateKey())
	sealed, _ := v.Seal([]byte("bk_secret"), []byte("method-a"))
	for _, aad := range []string{"method-b", "", "method-a ", "method-"} {
		if _, err := v.Open(sealed, []byte(aad)); !errors.Is(err, vault.ErrOpen) {
			t.Fatalf("a value sealed for method-a opened with aad %q", aad)
		}
	}
}

// A value sealed with a key this vault does not hold is ErrUnknownKey (a
// rotation in progress: retry), not ErrOpen (the value is unusable); a
// value that fails to open under a key it holds is ErrOpen.
func TestWrongKey(t *testing.T) {
	sealed, _ := mustNew(t, vault.GenerateKey()).Seal([]byte("bk"), []byte("r"))
	other := mustNew(t, vault.GenerateKey())
	_, err := other.Open(sealed, []byte("r"))
	if err == nil {
		t.Fatal("another key opened the value")
	}
	// Key ids are one byte: a random other key shares it 1 time in 256.
	if sealed[1] != mustSealID(t, other) && !errors.Is(err, vault.ErrUnknownKey) {
		t.Fatalf("a value sealed with a key not held: %v, want ErrUnknownKey", err)
	}
	if sealed[1] == mustSealID(t, other) && !errors.Is(err, vault.ErrOpen) {
		t.Fatalf("a value that does not open under the held key id: %v, want ErrOpen", err)
	}
}

func mustSealID(t *testing.T, v *vault.Vault) byte {
	t.Helper()
	s, err := v.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s[1]
}

// distinctKeys returns n fresh keys whose one-byte key ids differ: random
// keys share an id 1 time in 256, which a vault refuses (and so would make
// these tests fail by chance).
func distinctKeys(t *testing.T, n int) []string {
	t.Helper()
	seen := map[byte]bool{}
	var out []string
	for len(out) < n {
		k := vault.GenerateKey()
		if id := mustSealID(t, mustNew(t, k)); !seen[id] {
			seen[id] = true
			out = append(out, k)
		}
	}
	return out
}

func TestRotation(t *testing.T) {
	ks := distinctKeys(t, 4)
	oldKey, newKey := ks[0], ks[1]
	old := mustNew(t, oldKey)
	sealedOld, _ := old.Seal([]byte("bk-old"), []byte("r"))

	rotated := mustNew(t, newKey, oldKey)
	if pt, err := rotated.Open(sealedOld, []byte("r")); err != nil || string(pt) != "bk-old" {
		t.Fatalf("a value sealed before the rotation: %q %v", pt, err)
	}
	if rotated.SealedWithCurrent(sealedOld) {
		t.Fatal("a value sealed with the old key counts as current")
	}
	fresh, _ := rotated.Seal([]byte("bk-new"), []byte("r"))
	if !rotated.SealedWithCurrent(fresh) {
		t.Fatal("a fresh value is not sealed with the current key")
	}
	if _, err := old.Open(fresh, []byte("r")); err == nil {
		t.Fatal("new values are still sealed with the old key")
	}
	// Once the old key is dropped, only re-sealed values open.
	done := mustNew(t, newKey)
	if pt, err := done.Open(fresh, []byte("r")); err != nil || string(pt) != "bk-new" {
		t.Fatalf("after the rotation: %q %v", pt, err)
	}
	if _, err := done.Open(sealedOld, []byte("r")); err == nil {
		t.Fatal("a value sealed with a dropped key still opened")
	}
	// Several old keys at once.
	older := ks[2]
	sealedOlder, _ := mustNew(t, older).Seal([]byte("bk-older"), []byte("r"))
	multi := mustNew(t, ks[3], newKey, oldKey, older)
	for want, s := range map[string][]byte{"bk-older": sealedOlder, "bk-old": sealedOld, "bk-new": fresh} {
		if pt, err := multi.Open(s, []byte("r")); err != nil || string(pt) != want {
			t.Fatalf("%s: %q %v", want, pt, err)
		}
	}
}

func TestBadKeysAreRejectedWithoutEchoingThem(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 33))
	notB64 := "this-is-not-base64-but-a-secret!!"
	for _, k := range []string{"", "   ", short, long, notB64, vault.GenerateKey()[:43]} {
		_, err := vault.New(k)
		if err == nil {
			t.Fatalf("accepted key %q", k)
		}
		if strings.TrimSpace(k) != "" && strings.Contains(err.Error(), strings.TrimSpace(k)) {
			t.Fatalf("the error repeats the key: %v", err)
		}
	}
	good := vault.GenerateKey()
	if _, err := vault.NewWithOld(good, short); err == nil || !strings.Contains(err.Error(), "old key 1") || strings.Contains(err.Error(), short) {
		t.Fatalf("a bad old key: %v", err)
	}
	if _, err := vault.NewWithOld(good, good); err == nil {
		t.Fatal("the same key twice was accepted")
	}
	// Surrounding whitespace (a key read from a file) is not part of it.
	if _, err := vault.New(" " + good + "\n"); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeys(t *testing.T) {
	ks := distinctKeys(t, 2)
	oldKey, newKey := ks[0], ks[1]
	sealed, _ := mustNew(t, oldKey).Seal([]byte("bk"), []byte("r"))
	v, err := vault.ParseKeys(newKey + "  " + oldKey + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := v.Open(sealed, []byte("r")); err != nil || string(pt) != "bk" {
		t.Fatalf("old key in the list: %q %v", pt, err)
	}
	fresh, _ := v.Seal([]byte("bk"), []byte("r"))
	if !v.SealedWithCurrent(fresh) || v.SealedWithCurrent(sealed) {
		t.Fatal("ParseKeys does not seal with the first key")
	}
	if _, err := vault.ParseKeys(" "); err == nil {
		t.Fatal("an empty key list was accepted")
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := vault.GenerateKey(), vault.GenerateKey()
	raw, err := base64.StdEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Fatalf("GenerateKey: %d bytes, %v", len(raw), err)
	}
	if a == b {
		t.Fatal("two generated keys are equal")
	}
}

func TestPrintingAVaultRevealsNothing(t *testing.T) {
	v := mustNew(t, vault.GenerateKey())
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "vault", v)
	out := fmt.Sprintf("%v %+v %#v %s", v, v, v, v) + logs.String()
	if !strings.Contains(out, "redacted") || strings.Contains(out, "keys") || strings.Contains(out, "current") {
		t.Fatalf("a printed vault shows its insides: %s", out)
	}
}
