// Package vault encrypts billing keys at rest with AES-256-GCM under
// PAYFLOW_VAULT_KEY. Each ciphertext carries the id of the key that sealed
// it, so a rotated-out key can still open old rows while every new row is
// sealed with the current key.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Vault seals and opens secrets.
type Vault struct {
	current byte
	keys    map[byte]cipher.AEAD
}

// ErrOpen hides why a ciphertext failed to open (tampering, wrong row, or
// unknown key): none of it is useful to an attacker.
var ErrOpen = errors.New("vault: cannot open sealed value")

// New returns a vault with one key: base64 of 32 random bytes.
func New(keyBase64 string) (*Vault, error) { return NewWithOld(keyBase64) }

// NewWithOld returns a vault that seals with current and also opens values
// sealed with the old keys (during a rotation).
func NewWithOld(current string, old ...string) (*Vault, error) {
	v := &Vault{keys: map[byte]cipher.AEAD{}}
	for i, k := range append([]string{current}, old...) {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("vault: key %d must be base64 of exactly 32 bytes", i+1)
		}
		block, _ := aes.NewCipher(raw)
		aead, _ := cipher.NewGCM(block)
		id := keyID(raw)
		if _, dup := v.keys[id]; dup {
			return nil, errors.New("vault: two keys share an id; generate a new key")
		}
		v.keys[id] = aead
		if i == 0 {
			v.current = id
		}
	}
	return v, nil
}

// keyID is a byte of the key's hash: it names the key without revealing it.
func keyID(raw []byte) byte {
	h := sha256.Sum256(append([]byte("payflow-vault-key-id"), raw...))
	return h[0]
}

// ParseKeys reads PAYFLOW_VAULT_KEY: the current key, then any old keys
// still needed to open values sealed before a rotation, space separated.
func ParseKeys(s string) (*Vault, error) {
	keys := strings.Fields(s)
	if len(keys) == 0 {
		return nil, errors.New("vault: no key configured")
	}
	return NewWithOld(keys[0], keys[1:]...)
}

// SealedWithCurrent reports whether a value was sealed with the current key
// (a rotation re-seals the others).
func (v *Vault) SealedWithCurrent(sealed []byte) bool {
	return len(sealed) > 0 && sealed[0] == v.current
}

// GenerateKey returns a new random key in PAYFLOW_VAULT_KEY form.
func GenerateKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Seal encrypts plaintext bound to aad (the row's id): the result is
// key id || nonce || ciphertext.
func (v *Vault) Seal(plaintext, aad []byte) ([]byte, error) {
	aead := v.keys[v.current]
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = v.current
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], plaintext, aad), nil
}

// Open decrypts a sealed value; aad must be the one it was sealed with.
func (v *Vault) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1 {
		return nil, ErrOpen
	}
	aead, ok := v.keys[sealed[0]]
	if !ok || len(sealed) < 1+aead.NonceSize()+aead.Overhead() {
		return nil, ErrOpen
	}
	ns := 1 + aead.NonceSize()
	pt, err := aead.Open(nil, sealed[1:ns], sealed[ns:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
