package packer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// GenerateKey creates a new ed25519 key pair from rand (crypto/rand.Reader
// when rand is nil).
func GenerateKey(rand io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generating ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// ParsePublicKey parses a hex-encoded 32-byte ed25519 public key, the format
// Choria's `mms keys` prints. Surrounding whitespace (a trailing newline in a
// key file) is ignored.
//
// A private key given instead (the 64 bytes of a .key file) is refused
// with [ErrPrivateKeyGiven], which says so.
func ParsePublicKey(text string) (ed25519.PublicKey, error) {
	b, err := decodeKeyHex("public", text, ed25519.PublicKeySize)
	if err != nil {
		if _, perr := ParsePrivateKey(text); perr == nil {
			return nil, ErrPrivateKeyGiven
		}
		return nil, err
	}
	return ed25519.PublicKey(b), nil
}

// ErrPrivateKeyGiven is ParsePublicKey's error for a private key (seed and
// public key, as `mms keys` writes to NAME.key) where a public key belongs.
var ErrPrivateKeyGiven = errors.New("parsing public key: that is a private key, not a public key: give the public key ('mms keys --out NAME' writes it to NAME.pub, beside NAME.key)")

// ParsePrivateKey parses a hex-encoded 64-byte ed25519 private key: the
// 32-byte seed followed by the 32-byte public key, the format Choria's
// `mms keys` prints. Surrounding whitespace is ignored. The public half must
// be the one the seed derives, so a truncated or spliced key is refused.
// Errors never contain key material.
func ParsePrivateKey(text string) (ed25519.PrivateKey, error) {
	b, err := decodeKeyHex("private", text, ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	derived := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	if !bytes.Equal(derived[ed25519.SeedSize:], b[ed25519.SeedSize:]) {
		return nil, errors.New("parsing private key: public half does not match the seed")
	}
	return derived, nil
}

// decodeKeyHex decodes hex key text of want bytes. It never wraps the hex
// package's error, which quotes the offending character of the key.
func decodeKeyHex(kind, text string, want int) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("parsing %s key: key is empty", kind)
	}
	b, err := hex.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("parsing %s key: key is not valid hex", kind)
	}
	if len(b) != want {
		return nil, fmt.Errorf("parsing %s key: key is %d bytes, want %d", kind, len(b), want)
	}
	return b, nil
}

// FormatPublicKey returns pub as lowercase hex, the format ParsePublicKey reads.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return hex.EncodeToString(pub)
}

// FormatPrivateKey returns priv (seed‖public) as lowercase hex, the format
// ParsePrivateKey reads. The result is a secret: never log it or put it on a
// command line.
func FormatPrivateKey(priv ed25519.PrivateKey) string {
	return hex.EncodeToString(priv)
}

// KeyID names a public key in v2 envelopes and in messages: the first 8 bytes
// of the SHA-256 of the 32 raw public key bytes, as 16 lowercase hex
// characters. It is a hint for finding the key, not a secret and not a proof:
// signatures are always verified with the trusted key itself.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
