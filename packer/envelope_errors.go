package packer

import (
	"errors"
	"fmt"

	"github.com/mms-io/mms/spec"
)

// The errors Open returns for each kind of rejection. Match them with
// errors.Is; the messages carry the details (counts, key ids, serials).
var (
	// ErrUnsigned means the envelope carries no signature and the caller
	// did not allow unsigned specs.
	ErrUnsigned = errors.New("spec is unsigned")
	// ErrBadSignature means a signature that names a trusted key does not
	// verify: the envelope was altered or corrupted. A v1 signature names no
	// key, so for v1 it means the signature verifies with no trusted key.
	ErrBadSignature = errors.New("spec signature does not verify")
	// ErrUnknownKey means the spec is signed, but by no trusted key; the
	// message names the key ids.
	ErrUnknownKey = errors.New("spec signed by no trusted key")
	// ErrBelowThreshold means some trusted keys signed the spec, but fewer
	// than the threshold requires.
	ErrBelowThreshold = errors.New("spec has too few valid signatures")
	// ErrReplayed means the spec is older (lower serial) than the last one
	// accepted. It is expected when a lagging replica serves an old value:
	// warn and keep running the current spec.
	ErrReplayed = errors.New("older spec ignored")
	// ErrEquivocation means the spec reuses the serial of the last accepted
	// spec with different content: one signer signed two different specs
	// with the same serial.
	ErrEquivocation = errors.New("spec serial reused with different content")
	// ErrExpired means a new spec's expiry time has passed.
	ErrExpired = errors.New("spec expired")
	// ErrNotYetValid means a spec was issued further in the future than the
	// allowed clock skew; the signer's or this node's clock is wrong.
	ErrNotYetValid = errors.New("spec not valid yet")
	// ErrSerialAhead means a new spec's serial is above
	// spec.SerialCeiling: accepting it would make the node ignore every
	// lower serial. It is spec.ErrSerialAhead.
	ErrSerialAhead = spec.ErrSerialAhead
	// ErrMalformed means the envelope or its payload cannot be decoded: bad
	// JSON, unknown fields, wrong payload type, bad base64, too large.
	ErrMalformed = errors.New("malformed spec envelope")
	// ErrLegacyRefused means the envelope is a v1 (Choria) envelope and the
	// caller did not allow v1 specs, which have no replay protection.
	ErrLegacyRefused = errors.New("v1 spec refused")
)

// rejection is an Open error whose message is written for the operator and
// that matches its sentinel kind with errors.Is.
type rejection struct {
	kind error
	msg  string
}

func (r *rejection) Error() string { return r.msg }
func (r *rejection) Unwrap() error { return r.kind }

// reject returns a rejection of kind with a formatted message.
func reject(kind error, format string, args ...any) error {
	return &rejection{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// malformed returns an ErrMalformed error with the given detail.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
