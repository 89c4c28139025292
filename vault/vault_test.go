package vault_test

import (
	"bytes"
	"testing"

	"github.com/payflow/payflow/vault"
)

func TestSealOpen(t *testing.T) {
	v, err := vault.New(vault.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := v.Seal([]byte("bk_secret"), []byte("row-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("bk_secret")) {
		t.Fatal("plaintext visible in the sealed value")
	}
	if pt, err := v.Open(sealed, []byte("row-1")); err != nil || string(pt) != "bk_secret" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := v.Open(sealed, []byte("row-2")); err == nil {
		t.Fatal("a value moved to another row opened")
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	if _, err := v.Open(tampered, []byte("row-1")); err == nil {
		t.Fatal("a tampered value opened")
	}
	other, _ := vault.New(vault.GenerateKey())
	if _, err := other.Open(sealed, []byte("row-1")); err == nil {
		t.Fatal("another key opened the value")
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := vault.GenerateKey(), vault.GenerateKey()
	old, _ := vault.New(oldKey)
	sealed, _ := old.Seal([]byte("bk"), []byte("r"))
	rotated, err := vault.NewWithOld(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := rotated.Open(sealed, []byte("r")); err != nil || string(pt) != "bk" {
		t.Fatalf("old value under rotation: %q %v", pt, err)
	}
	fresh, _ := rotated.Seal([]byte("bk2"), []byte("r"))
	if _, err := old.Open(fresh, []byte("r")); err == nil {
		t.Fatal("new values are still sealed with the old key")
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	for _, k := range []string{"", "short", "bm90IDMyIGJ5dGVz"} {
		if _, err := vault.New(k); err == nil {
			t.Errorf("accepted key %q", k)
		}
	}
}

func TestParseKeysSealsWithTheFirst(t *testing.T) {
	oldKey, newKey := vault.GenerateKey(), vault.GenerateKey()
	old, _ := vault.New(oldKey)
	sealed, _ := old.Seal([]byte("bk"), []byte("r"))
	v, err := vault.ParseKeys(newKey + " " + oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if v.SealedWithCurrent(sealed) {
		t.Fatal("a value sealed with the old key counts as current")
	}
	fresh, _ := v.Seal([]byte("bk"), []byte("r"))
	if !v.SealedWithCurrent(fresh) {
		t.Fatal("a fresh value is not sealed with the current key")
	}
	if _, err := vault.ParseKeys(" "); err == nil {
		t.Fatal("an empty key list was accepted")
	}
}
