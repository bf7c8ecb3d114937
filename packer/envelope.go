package packer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/mms-io/mms/spec"
)

// Format is the wire format of a spec envelope.
type Format int

const (
	// FormatV1 is Choria's `mms pack` envelope:
	// {"machines":"<base64 of the raw JSON array>","signature":"<hex ed25519>"}.
	// It carries no serial or expiry, so it has no replay protection.
	FormatV1 Format = 1
	// FormatV2 is the default: a DSSE envelope of PayloadType whose payload
	// holds the serial, issue time, optional expiry and machines.
	FormatV2 Format = 2
)

// String returns "v1" or "v2".
func (f Format) String() string {
	switch f {
	case FormatV1:
		return "v1"
	case FormatV2:
		return "v2"
	default:
		return fmt.Sprintf("Format(%d)", int(f))
	}
}

// MarshalText encodes f as "v1" or "v2".
func (f Format) MarshalText() ([]byte, error) {
	if f != FormatV1 && f != FormatV2 {
		return nil, fmt.Errorf("encoding envelope format: unknown format %d", int(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText decodes "v1" or "v2".
func (f *Format) UnmarshalText(text []byte) error {
	switch string(text) {
	case "v1":
		*f = FormatV1
	case "v2":
		*f = FormatV2
	default:
		return fmt.Errorf("decoding envelope format: unknown format %q, want \"v1\" or \"v2\"", text)
	}
	return nil
}

// PayloadType is the DSSE payload type of a v2 envelope. It is part of the
// signed bytes (DSSE PAE), so a signature made by the same key for another
// purpose never verifies as a spec.
const PayloadType = "application/vnd.mms.spec+json; version=2"

// PayloadTypeZstd is the DSSE payload type of a v2 envelope whose payload
// is the v2 JSON compressed with zstd (one or more frames): what lets a
// spec of ten thousand entries fit in MaxEnvelopeSize. The signatures
// cover the compressed bytes, under this type, like any DSSE payload;
// agents verify them, then decompress at most MaxPayloadSize bytes.
// Agents older than this type refuse such an envelope, naming its
// payloadType, so Seal compresses only a spec that would not fit
// otherwise (see Compression). v1 envelopes are never compressed.
const PayloadTypeZstd = "application/vnd.mms.spec+json; version=2; compression=zstd"

// MaxPayloadSize bounds the decompressed payload of a v2 envelope of
// PayloadTypeZstd: a compressed spec that would decompress to more is
// refused (a decompression bomb stops there). It is sixteen times
// MaxEnvelopeSize; a 10,000-entry spec (each entry with its own archive
// and matcher) is about 2.6 MB.
const MaxPayloadSize = 16 << 20

// MaxEnvelopeSize is the largest envelope Open and Inspect read, after
// surrounding whitespace is trimmed (NATS's default max_payload).
const MaxEnvelopeSize = 1 << 20

// maxSignatures caps the signature entries of an envelope, so a hostile
// envelope cannot make Open verify thousands of signatures.
const maxSignatures = 16

// Opened is a spec that Open accepted (or that Inspect decoded).
type Opened struct {
	// Format is the envelope format.
	Format Format
	// Spec is the decoded spec. v1 specs have serial 0 and no times.
	Spec *spec.Spec
	// KeyIDs are the sorted ids of the trusted keys whose signature
	// verified. From Inspect they are the ids the envelope CLAIMS, unverified.
	KeyIDs []string
	// Digest is the lowercase hex SHA-256 of the signed payload bytes: the
	// raw machines JSON for v1, the payload for v2.
	Digest string
	// Stale reports that the spec has expired but is the one already
	// accepted: keep running it and report it as stale.
	Stale bool
	// Unchanged reports that the spec has the serial and digest of the last
	// accepted spec; nothing needs to be recorded or redone.
	Unchanged bool
	// Compressed says the payload was zstd-compressed (PayloadTypeZstd).
	Compressed bool
	// Reset, when set, says that this spec was accepted out of serial
	// order: it is a reset spec (spec.Spec.ResetHistory) and the node's
	// last accepted serial was above spec.SerialCeiling. It names the
	// record the reset replaced; callers should log it loudly.
	Reset *HistoryReset
}

// envelopeSig is one signature of an envelope, decoded from the wire.
type envelopeSig struct {
	// keyID is the claimed key id; empty for v1, whose signature names no key.
	keyID string
	sig   []byte
}

// sealedSpec is an envelope decoded but not yet verified: the exact payload
// bytes, the message the signatures cover and the signatures.
type sealedSpec struct {
	format Format
	// envelope is the whole envelope, surrounding whitespace trimmed.
	envelope []byte
	payload  []byte
	message  []byte
	sigs     []envelopeSig
	// compressed says payload is zstd-compressed JSON; plain is the JSON
	// once decodePayload decompressed it.
	compressed bool
	plain      []byte
}

// digest returns the hex SHA-256 of the payload's JSON: the signed bytes,
// or for a compressed payload the bytes they decompress to, so a spec has
// one digest whether or not it travelled compressed.
func (s *sealedSpec) digest() string {
	b := s.payload
	if s.compressed {
		b = s.plain
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// decodeEnvelope trims data, checks its size, detects its format and decodes
// the envelope strictly. It does not verify or parse the payload.
func decodeEnvelope(data []byte) (*sealedSpec, error) {
	data = bytes.TrimSpace(data)
	if len(data) > MaxEnvelopeSize {
		return nil, malformed("envelope is %d bytes, at most %d allowed", len(data), MaxEnvelopeSize)
	}
	if sealed, err := decodeV2EnvelopeFast(data); err == nil {
		sealed.envelope = data
		return sealed, nil
	}
	f, err := detectFormat(data)
	if err != nil {
		return nil, err
	}
	decode := decodeV2Envelope
	if f == FormatV1 {
		decode = decodeV1Envelope
	}
	sealed, err := decode(data)
	if err != nil {
		return nil, err
	}
	sealed.envelope = data
	return sealed, nil
}

// detectFormat tells a v2 envelope (it has payloadType) from a v1 envelope
// (it has machines).
func detectFormat(data []byte) (Format, error) {
	if len(data) == 0 {
		return 0, malformed("envelope is empty")
	}
	if data[0] != '{' {
		return 0, malformed("envelope is not a JSON object")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return 0, malformed("envelope is not valid JSON: %v", err)
	}
	_, v2 := probe["payloadType"]
	_, v1 := probe["machines"]
	var f Format
	switch {
	case v1 && v2:
		return 0, malformed("envelope has both payloadType (v2) and machines (v1)")
	case v2:
		f = FormatV2
	case v1:
		f = FormatV1
	default:
		return 0, malformed("envelope has neither payloadType (v2) nor machines (v1)")
	}
	// encoding/json matches field names case-insensitively; compare the
	// exact names here so "Signature" or "SIGNATURES" is refused too.
	allowed := envelopeFields(f)
	for _, name := range slices.Sorted(maps.Keys(probe)) {
		if !slices.Contains(allowed, name) {
			return 0, malformed("unknown %s envelope field %q", f, name)
		}
	}
	return f, nil
}

// envelopeFields returns the exact field names an envelope of format f may have.
func envelopeFields(f Format) []string {
	if f == FormatV1 {
		return []string{"machines", "signature"}
	}
	return []string{"payloadType", "payload", "signatures"}
}

// unmarshalEnvelopeStrict decodes exactly one JSON value from data into v,
// refusing unknown fields and trailing data.
func unmarshalEnvelopeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// Inspect decodes an envelope WITHOUT verifying any signature or applying
// replay rules, for displaying it (`mms show`). Nothing it returns is
// trusted: KeyIDs are the key ids the envelope claims, and a forged envelope
// inspects as well as a genuine one. Use Open to act on a spec.
func Inspect(data []byte) (*Opened, error) {
	sealed, err := decodeEnvelope(data)
	if err != nil {
		return nil, err
	}
	s, err := decodePayload(sealed)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, sg := range sealed.sigs {
		if sg.keyID != "" {
			ids = append(ids, sg.keyID)
		}
	}
	slices.Sort(ids)
	return &Opened{
		Format:     sealed.format,
		Spec:       s,
		KeyIDs:     slices.Compact(ids),
		Digest:     sealed.digest(),
		Compressed: sealed.compressed,
	}, nil
}

// decodePayload strictly decodes the payload of a sealed spec.
func decodePayload(sealed *sealedSpec) (*spec.Spec, error) {
	if sealed.format == FormatV1 {
		machines, err := decodeV1Machines(sealed.payload)
		if err != nil {
			return nil, fmt.Errorf("%w: decoding v1 machines: %w", ErrMalformed, err)
		}
		return &spec.Spec{Machines: machines}, nil
	}
	payload := sealed.payload
	if sealed.compressed {
		plain, err := decompressPayload(payload)
		if err != nil {
			return nil, fmt.Errorf("%w: decompressing v2 payload: %w", ErrMalformed, err)
		}
		sealed.plain, payload = plain, plain
	}
	s, err := decodeV2Payload(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: decoding v2 payload: %w", ErrMalformed, err)
	}
	return s, nil
}
