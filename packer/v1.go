package packer

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mms-io/mms/spec"
)

// v1Envelope is Choria's `mms pack` output. Choria marshals Machines as a
// []byte, which encoding/json writes as standard base64.
type v1Envelope struct {
	Machines  string `json:"machines"`
	Signature string `json:"signature,omitempty"`
}

// v1Machine is a machine entry as Choria writes it. Choria's README examples
// carry "verify": "SHA256SUMS", which Choria's own decoder ignores (it always
// uses SHA256SUMS), so real specs contain it; it is accepted with that one
// value and dropped.
// decodeV1Envelope strictly decodes a v1 envelope. The signature, when
// present, covers the raw machines bytes.
func decodeV1Envelope(data []byte) (*sealedSpec, error) {
	var env struct {
		Machines  *string `json:"machines"`
		Signature *string `json:"signature"`
	}
	if err := unmarshalEnvelopeStrict(data, &env); err != nil {
		return nil, malformed("decoding v1 envelope: %v", err)
	}
	if env.Machines == nil {
		return nil, malformed("v1 envelope: machines is null")
	}
	raw, err := base64.StdEncoding.DecodeString(*env.Machines)
	if err != nil {
		return nil, malformed("v1 envelope: machines is not valid base64")
	}
	if len(raw) == 0 {
		return nil, malformed("v1 envelope: machines is empty")
	}
	sealed := &sealedSpec{format: FormatV1, payload: raw, message: raw}
	if env.Signature == nil || *env.Signature == "" {
		return sealed, nil
	}
	sig, err := hex.DecodeString(*env.Signature)
	if err != nil {
		return nil, malformed("v1 envelope: signature is not valid hex")
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, malformed("v1 envelope: signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	sealed.sigs = []envelopeSig{{sig: sig}}
	return sealed, nil
}

// decodeV1Machines strictly decodes the raw machines JSON of a v1 envelope
// with spec.DecodeV1. It does not validate the entries (names, checksums,
// matchers): that is spec.ValidateMachines' job.
func decodeV1Machines(raw []byte) ([]spec.Machine, error) {
	return spec.DecodeV1(raw)
}

// sealV1 writes a v1 envelope: the machines as a compact JSON array, base64
// encoded, signed over exactly those bytes when a key is given.
func sealV1(s *spec.Spec, keys []ed25519.PrivateKey) ([]byte, error) {
	if !s.Expires.IsZero() {
		return nil, errors.New("sealing v1 spec: v1 cannot carry an expiry, use v2")
	}
	if len(keys) > 1 {
		return nil, fmt.Errorf("sealing v1 spec: v1 carries one signature, got %d keys", len(keys))
	}
	raw, err := spec.EncodeV1(s.Machines)
	if err != nil {
		return nil, fmt.Errorf("sealing v1 spec: %w", err)
	}
	env := v1Envelope{Machines: base64.StdEncoding.EncodeToString(raw)}
	if len(keys) == 1 {
		env.Signature = hex.EncodeToString(ed25519.Sign(keys[0], raw))
	}
	out, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("sealing v1 spec: encoding envelope: %w", err)
	}
	return out, nil
}
