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
	if env.PayloadType != PayloadType {
		return nil, malformed("v2 envelope: payloadType is %q, want %q", truncateForMessage(env.PayloadType), PayloadType)
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
	sealed := &sealedSpec{
		format:  FormatV2,
		payload: payload,
		message: dsse.PAE(PayloadType, payload),
	}
	for i, s := range env.Signatures {
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
// signed by every key over PAE(PayloadType, payload).
func sealV2(s *spec.Spec, keys []ed25519.PrivateKey) ([]byte, error) {
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
	env := dsse.Envelope{
		PayloadType: PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  make([]dsse.Signature, 0, len(keys)),
	}
	message := dsse.PAE(PayloadType, payload)
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
