package packer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// errNotFast says decodeV2EnvelopeFast left an envelope to the full decoder.
var errNotFast = errors.New("not an envelope for the fast decoder")

// decodeV2EnvelopeFast decodes a well-formed v2 envelope (exact field
// names, each once, nothing else) in one pass, into what detectFormat and
// decodeV2Envelope would return for it. Anything else, including every
// envelope they refuse, is left to them (it returns an error): they name
// the problem. The full path reads a 1 MiB envelope three times (a probe
// of its fields, a strict decode, the payload's base64) and copies it
// twice; FuzzDecodeV2EnvelopeFast checks that the two agree.
func decodeV2EnvelopeFast(data []byte) (*sealedSpec, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data)) // rejects repeated names and invalid UTF-8
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, errNotFast
	}
	var env dsse.Envelope
	var seen int
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		switch name.String() {
		case "payloadType":
			env.PayloadType, err = readString(dec)
		case "payload":
			env.Payload, err = readString(dec)
		case "signatures":
			env.Signatures, err = readSignatures(dec)
		default:
			return nil, errNotFast
		}
		if err != nil {
			return nil, err
		}
		seen++
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF || seen != 3 {
		return nil, errNotFast
	}
	if env.PayloadType != PayloadType && env.PayloadType != PayloadTypeZstd {
		return nil, errNotFast
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil || len(payload) == 0 || len(env.Signatures) > maxSignatures {
		return nil, errNotFast
	}
	return sealedV2(env.PayloadType, payload, env.Signatures)
}

// readString reads a JSON string (not null) from dec.
func readString(dec *jsontext.Decoder) (string, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return "", err
	}
	if tok.Kind() != '"' {
		return "", errNotFast
	}
	return tok.String(), nil
}

// readSignatures reads a list of {"keyid","sig"} objects, both fields
// present, from dec.
func readSignatures(dec *jsontext.Decoder) ([]dsse.Signature, error) {
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return nil, errNotFast
	}
	sigs := []dsse.Signature{}
	for dec.PeekKind() != ']' {
		if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
			return nil, errNotFast
		}
		var s dsse.Signature
		fields := 0
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			switch name.String() {
			case "keyid":
				s.KeyID, err = readString(dec)
			case "sig":
				s.Sig, err = readString(dec)
			default:
				return nil, errNotFast
			}
			if err != nil {
				return nil, err
			}
			fields++
		}
		if _, err := dec.ReadToken(); err != nil || fields != 2 {
			return nil, errNotFast
		}
		sigs = append(sigs, s)
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	return sigs, nil
}
