package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/certflow/certflow/internal/secretfile"
)

// KEK is a 256-bit key-encryption key. Private keys at rest are sealed under
// it with AES-256-GCM; its String form never reveals it. It also keys
// MACs (a subkey derived from it), for digests that must not be open to an
// offline guess by whoever reads Redis.
type KEK struct {
	aead   cipher.AEAD
	macKey []byte
}

// String keeps the key out of logs and %v output.
func (KEK) String() string { return "KEK(redacted)" }

// NewKEK wraps 32 raw key bytes.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("key-encryption key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// The MAC key is derived, never the sealing key itself: a MAC and a
	// ciphertext under one key would be two uses of one secret.
	h := hmac.New(sha256.New, key)
	h.Write([]byte("certflow/kek/mac/v1"))
	return &KEK{aead: aead, macKey: h.Sum(nil)}, nil
}

// LoadKEKFile reads a KEK file: 64 hex characters (surrounding whitespace
// ignored) or exactly 32 raw bytes. A symbolic link, or a file its group
// or others may read, is refused (secretfile.Read).
func LoadKEKFile(path string) (*KEK, error) {
	b, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key: %w", err)
	}
	if len(b) == 32 {
		return NewKEK(b)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: want 64 hex characters or 32 raw bytes", path)
	}
	return NewKEK(raw)
}

// LoadOrCreateKEKFile loads the KEK at path, or creates one there (mode
// 0600; processes starting together agree on one key). created reports
// whether this call made it.
func LoadOrCreateKEKFile(path string) (kek *KEK, created bool, err error) {
	_, created, err = secretfile.LoadOrCreate(path, func() ([]byte, error) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(raw) + "\n"), nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("key-encryption key: %w", err)
	}
	kek, err = LoadKEKFile(path)
	return kek, created, err
}

// Seal encrypts plaintext; aad binds the ciphertext to its context (a CA
// name, a request id) so a sealed blob cannot be swapped for another.
// The nonce is prepended.
func (k *KEK) Seal(plaintext, aad []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return k.aead.Seal(nonce, nonce, plaintext, aad)
}

// Open reverses Seal.
func (k *KEK) Open(sealed, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, errors.New("sealed data too short")
	}
	pt, err := k.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, errors.New("sealed data does not decrypt under this key-encryption key")
	}
	return pt, nil
}

// MAC is HMAC-SHA256, under a key derived from the KEK, of label and then
// data (label separates the uses; it is length-prefixed, so no label's
// input can be mistaken for another's).
func (k *KEK) MAC(label string, data []byte) []byte {
	h := hmac.New(sha256.New, k.macKey)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(label))))
	h.Write([]byte(label))
	h.Write(data)
	return h.Sum(nil)
}
