package packer

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/mms-io/mms/spec"
)

// keyIDLen is the length of a KeyID in hex characters.
const keyIDLen = 16

// decodeV2Envelope strictly decodes a DSSE envelope of PayloadType. The
// signatures cover DSSE's PAE of the type and the decoded payload bytes.
func decodeV2Envelope(data []byte) (*sealedSpec, error) {
	var env dsse.Envelope
	if err := unmarshalEnvelopeStrict(data, &env); err != nil {
		return nil, malformed("decoding v2 envelope: %v", err)
	}
	if env.PayloadType != PayloadType && env.PayloadType != PayloadTypeZstd {
		return nil, malformed("v2 envelope: payloadType is %q, want %q or %q", truncateForMessage(env.PayloadType), PayloadType, PayloadTypeZstd)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, malformed("v2 envelope: payload is not valid standard base64")
	}
	if len(payload) == 0 {
		return nil, malformed("v2 envelope: payload is empty")
	}
	if len(env.Signatures) > maxSignatures {
		return nil, malformed("v2 envelope: %d signatures, at most %d allowed", len(env.Signatures), maxSignatures)
	}
	return sealedV2(env.PayloadType, payload, env.Signatures)
}

// sealedV2 is the sealed spec of a v2 envelope whose type and payload were
// checked: the message its signatures cover and the signatures, decoded.
func sealedV2(payloadType string, payload []byte, sigs []dsse.Signature) (*sealedSpec, error) {
	sealed := &sealedSpec{
		format:     FormatV2,
		payload:    payload,
		message:    dsse.PAE(payloadType, payload),
		compressed: payloadType == PayloadTypeZstd,
	}
	for i, s := range sigs {
		if !isKeyID(s.KeyID) {
			return nil, malformed("v2 envelope: signatures[%d]: keyid is not %d lowercase hex characters", i, keyIDLen)
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, malformed("v2 envelope: signatures[%d]: sig is not valid standard base64", i)
		}
		sealed.sigs = append(sealed.sigs, envelopeSig{keyID: s.KeyID, sig: sig})
	}
	return sealed, nil
}

// isKeyID reports whether s has the form of a KeyID.
func isKeyID(s string) bool {
	if len(s) != keyIDLen {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// truncateForMessage shortens an untrusted string quoted in an error message.
func truncateForMessage(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// decodeV2Payload strictly decodes a v2 payload with spec.DecodeV2 (no
// unknown fields, so no username or password) and requires what a v2 spec
// cannot do without: a serial of at least 1 and an issue time. It does not
// validate the entries: that is spec.Validate's job.
func decodeV2Payload(payload []byte) (*spec.Spec, error) {
	s, err := spec.DecodeV2(payload)
	if err != nil {
		return nil, err
	}
	switch {
	case s.Serial == 0:
		return nil, errors.New("serial is missing or 0, want at least 1")
	case s.IssuedAt.IsZero():
		return nil, errors.New("issued_at is missing")
	}
	return s, nil
}

// sealV2 writes a DSSE envelope whose payload is the compact JSON of s,
// compressed as c says, signed by every key over PAE(payloadType, payload).
func sealV2(s *spec.Spec, c Compression, keys []ed25519.PrivateKey) ([]byte, error) {
	if s.Serial == 0 {
		return nil, errors.New("sealing v2 spec: serial is 0, want at least 1")
	}
	if s.IssuedAt.IsZero() {
		return nil, errors.New("sealing v2 spec: issued_at is not set")
	}
	payload, err := spec.EncodeV2(s)
	if err != nil {
		return nil, fmt.Errorf("sealing v2 spec: %w", err)
	}
	switch c {
	case CompressAuto:
		env, err := sealV2Payload(PayloadType, payload, keys)
		if err != nil || len(env) <= MaxEnvelopeSize {
			return env, err
		}
		return sealV2Compressed(payload, keys)
	case CompressAlways:
		return sealV2Compressed(payload, keys)
	case CompressNever:
		return sealV2Payload(PayloadType, payload, keys)
	}
	return nil, fmt.Errorf("sealing v2 spec: unknown compression %d", int(c))
}

// sealV2Compressed seals payload compressed, as PayloadTypeZstd.
func sealV2Compressed(payload []byte, keys []ed25519.PrivateKey) ([]byte, error) {
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("sealing v2 spec: the payload is %d bytes; agents decompress at most %d", len(payload), MaxPayloadSize)
	}
	return sealV2Payload(PayloadTypeZstd, compressPayload(payload), keys)
}

// sealV2Payload writes the DSSE envelope of payload, of payloadType.
func sealV2Payload(payloadType string, payload []byte, keys []ed25519.PrivateKey) ([]byte, error) {
	env := dsse.Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  make([]dsse.Signature, 0, len(keys)),
	}
	message := dsse.PAE(payloadType, payload)
	for _, k := range keys {
		env.Signatures = append(env.Signatures, dsse.Signature{
			KeyID: KeyID(k.Public().(ed25519.PublicKey)),
			Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(k, message)),
		})
	}
	enc, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("sealing v2 spec: encoding envelope: %w", err)
	}
	return enc, nil
}
