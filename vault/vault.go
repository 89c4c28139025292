// Package vault owns the encryption of billing keys at rest: AES-256-GCM
// under PAYFLOW_VAULT_KEY, each value bound to the row it belongs to.
//
// A sealed value is
//
//	version (1) || key id (1) || nonce (12) || ciphertext || GCM tag (16)
//
// The version lets the format change without guessing; the key id names the
// key that sealed the value, so that during a rotation old rows still open
// with the old key while every new row is sealed with the current one. The
// header is authenticated along with the caller's associated data (the
// method id), so neither a flipped header byte nor a value copied onto
// another row opens.
package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

const (
	// formatV1 is AES-256-GCM with a 12-byte random nonce.
	formatV1  byte = 1
	headerLen      = 2
	nonceLen       = 12
	tagLen         = 16
	keyLen         = 32
)

// Vault seals and opens secrets. It is safe for concurrent use.
type Vault struct {
	current byte
	keys    map[byte]cipher.AEAD
}

// ErrOpen hides why a sealed value failed to open (tampering, another row's
// value, an unknown key or format): none of it helps an attacker, and all of
// it means the same to payflow, namely that the billing key is unusable.
var ErrOpen = errors.New("vault: cannot open sealed value")

// ErrUnknownKey: the value was sealed with a key this vault does not hold
// (a key rotation not yet rolled out everywhere). Unlike ErrOpen it says
// nothing about the value, which another process may open: retry, do not
// give the billing key up.
var ErrUnknownKey = errors.New("vault: sealed with a key this process does not hold")

// New returns a vault with one key: base64 of exactly 32 random bytes, as
// GenerateKey makes.
func New(keyBase64 string) (*Vault, error) { return NewWithOld(keyBase64) }

// NewWithOld returns a vault that seals with current and also opens values
// sealed with any of the old keys, for the time a rotation takes.
func NewWithOld(current string, old ...string) (*Vault, error) {
	v := &Vault{keys: map[byte]cipher.AEAD{}}
	raws := make([][]byte, 0, 1+len(old))
	for i, k := range append([]string{current}, old...) {
		raw, err := decodeKey(k)
		if err != nil {
			// Name the key by position only: the error may be logged.
			if i == 0 {
				return nil, fmt.Errorf("vault: current key: %w", err)
			}
			return nil, fmt.Errorf("vault: old key %d: %w", i, err)
		}
		id := keyID(raw)
		for j, prev := range raws {
			if bytes.Equal(prev, raw) {
				return nil, fmt.Errorf("vault: key %d repeats key %d", i+1, j+1)
			}
		}
		if _, clash := v.keys[id]; clash {
			// One byte of id keeps the overhead small; two configured keys
			// share it with probability 1/256 and are refused rather than
			// guessed between.
			return nil, fmt.Errorf("vault: key %d has the same key id as an earlier key; generate another key", i+1)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("vault: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("vault: key %d: %w", i+1, err)
		}
		v.keys[id] = aead
		raws = append(raws, raw)
		if i == 0 {
			v.current = id
		}
	}
	return v, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("is empty; want base64 of 32 random bytes (see GenerateKey)")
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// base64's own error names only an offset, but say it plainly.
		return nil, errors.New("is not valid base64; want base64 of 32 random bytes")
	}
	if len(raw) != keyLen {
		return nil, fmt.Errorf("decodes to %d bytes; want exactly %d (AES-256)", len(raw), keyLen)
	}
	return raw, nil
}

// keyID is one byte of a hash of the key: it tells keys apart without
// revealing anything useful about them, and it stays the same when a key
// moves from current to old, which a position in the list would not.
func keyID(raw []byte) byte {
	h := sha256.Sum256(append([]byte("payflow-vault-key-id\x00"), raw...))
	return h[0]
}

// ParseKeys reads PAYFLOW_VAULT_KEY: the current key, then any old keys
// still needed to open values sealed before a rotation, space separated.
func ParseKeys(s string) (*Vault, error) {
	keys := strings.Fields(s)
	if len(keys) == 0 {
		return nil, errors.New("vault: no key configured (PAYFLOW_VAULT_KEY)")
	}
	return NewWithOld(keys[0], keys[1:]...)
}

// GenerateKey returns a new random key in PAYFLOW_VAULT_KEY form.
func GenerateKey() string {
	b := make([]byte, keyLen)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Seal encrypts plaintext bound to aad (the row's id) with the current key
// and a fresh random nonce.
func (v *Vault) Seal(plaintext, aad []byte) ([]byte, error) {
	aead := v.keys[v.current]
	out := make([]byte, headerLen+nonceLen, headerLen+nonceLen+len(plaintext)+tagLen)
	out[0], out[1] = formatV1, v.current
	nonce := out[headerLen : headerLen+nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("vault: nonce: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, boundAAD(out[:headerLen], aad)), nil
}

// Open decrypts a sealed value; aad must be the one it was sealed with.
// Every failure is ErrOpen, except a key id this vault does not hold:
// ErrUnknownKey.
func (v *Vault) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < headerLen+nonceLen+tagLen || sealed[0] != formatV1 {
		return nil, ErrOpen
	}
	aead, ok := v.keys[sealed[1]]
	if !ok {
		return nil, ErrUnknownKey
	}
	nonce := sealed[headerLen : headerLen+nonceLen]
	pt, err := aead.Open(nil, nonce, sealed[headerLen+nonceLen:], boundAAD(sealed[:headerLen], aad))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// SealedWithCurrent reports whether a value is sealed with the current key
// in the current format; a rotation re-seals every value that is not.
func (v *Vault) SealedWithCurrent(sealed []byte) bool {
	return len(sealed) >= headerLen && sealed[0] == formatV1 && sealed[1] == v.current
}

// boundAAD authenticates the header along with the caller's data. The
// header has a fixed length, so the concatenation is unambiguous.
func boundAAD(header, aad []byte) []byte {
	return append(append(make([]byte, 0, len(header)+len(aad)), header...), aad...)
}

// String keeps keys out of logs and panics: a *Vault printed with %+v would
// otherwise show its ciphers' expanded key schedules.
func (v *Vault) String() string { return "vault.Vault{redacted}" }

// GoString is String for %#v.
func (v *Vault) GoString() string { return v.String() }

// LogValue is String for slog.
func (v *Vault) LogValue() slog.Value { return slog.StringValue(v.String()) }
