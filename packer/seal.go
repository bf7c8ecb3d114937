package packer

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/mms-io/mms/spec"
)

// Seal encodes s as an envelope of format f signed by every key, as compact
// JSON with no trailing newline. ed25519 signatures are deterministic, so the
// same spec and keys always give the same bytes.
//
//   - FormatV1 writes Choria's envelope: the machines as a JSON array, base64
//     encoded, with a hex signature over exactly those bytes. v1 carries at
//     most one signature and no serial or times: s.Serial and s.IssuedAt are
//     not written, and a set s.Expires is an error.
//   - FormatV2 writes a DSSE envelope of [PayloadType] whose payload is
//     {"serial","issued_at","expires" (when set),"machines"}; s.Serial must be
//     at least 1 and s.IssuedAt set. Entries may not carry username or
//     password (v1 only). A spec whose envelope would be larger than
//     [MaxEnvelopeSize] is sealed compressed instead ([PayloadTypeZstd];
//     see [SealWith] for the other choices).
//
// With no keys the envelope is unsigned; only an Open with AllowUnsigned
// accepts it. The same key given twice is an error. Seal does not validate
// the entries: run spec.Validate first.
func Seal(f Format, s *spec.Spec, keys ...ed25519.PrivateKey) ([]byte, error) {
	return SealWith(f, s, SealOptions{}, keys...)
}

// Compression says when a v2 envelope's payload is compressed
// (PayloadTypeZstd).
type Compression int

const (
	// CompressAuto compresses only a payload whose plain envelope would be
	// larger than MaxEnvelopeSize: every agent reads a plain envelope,
	// only agents that know PayloadTypeZstd read a compressed one.
	CompressAuto Compression = iota
	// CompressAlways always compresses.
	CompressAlways
	// CompressNever never compresses; a spec too large for one envelope
	// is then refused by Open.
	CompressNever
)

// SealOptions tune [SealWith]. The zero value is Seal's behaviour.
type SealOptions struct {
	// Compression applies to v2 envelopes; v1 envelopes are never
	// compressed (Choria's agents read only plain JSON).
	Compression Compression
}

// SealWith is [Seal] with options.
func SealWith(f Format, s *spec.Spec, opts SealOptions, keys ...ed25519.PrivateKey) ([]byte, error) {
	if s == nil {
		return nil, errors.New("sealing spec: spec is nil")
	}
	if err := checkSealKeys(keys); err != nil {
		return nil, err
	}
	switch f {
	case FormatV1:
		return sealV1(s, keys)
	case FormatV2:
		return sealV2(s, opts.Compression, keys)
	default:
		return nil, fmt.Errorf("sealing spec: unknown format %d", int(f))
	}
}

// checkSealKeys refuses keys ed25519.Sign would panic on, keys whose public
// half is not the seed's, and the same key twice.
func checkSealKeys(keys []ed25519.PrivateKey) error {
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if len(k) != ed25519.PrivateKeySize {
			return fmt.Errorf("sealing spec: key %d is %d bytes, want %d", i, len(k), ed25519.PrivateKeySize)
		}
		derived := ed25519.NewKeyFromSeed(k.Seed())
		if !bytes.Equal(derived, k) {
			return fmt.Errorf("sealing spec: key %d: public half does not match the seed", i)
		}
		id := KeyID(k.Public().(ed25519.PublicKey))
		if seen[id] {
			return fmt.Errorf("sealing spec: key %d (keyid %s) given more than once", i, id)
		}
		seen[id] = true
	}
	return nil
}
