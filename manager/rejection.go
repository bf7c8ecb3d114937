package manager

import (
	"errors"
	"slices"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// Rejection says why a whole spec was not acted on. The empty Rejection
// means the spec was accepted. The values appear in the machines watcher's
// state events ("rejected"); people see a rejection's outcome word
// ([Rejection.Outcome]).
type Rejection string

// The kinds of rejection. Each matches one packer sentinel (or spec's
// ErrInvalid), so Report.Err also matches it with errors.Is.
const (
	// RejectMissing: there is no spec to open (the KV key or the data item
	// is missing). Nothing is purged.
	RejectMissing Rejection = "spec_missing"
	// RejectMalformed: the envelope or payload does not decode.
	RejectMalformed Rejection = "malformed"
	// RejectLegacy: a v1 envelope and legacy specs are not allowed.
	RejectLegacy Rejection = "legacy_refused"
	// RejectUnsigned: the envelope carries no signature.
	RejectUnsigned Rejection = "unsigned"
	// RejectBadSignature: a signature does not verify.
	RejectBadSignature Rejection = "bad_signature"
	// RejectUnknownKey: signed, but by no trusted key.
	RejectUnknownKey Rejection = "unknown_key"
	// RejectBelowThreshold: fewer distinct trusted keys signed than the
	// threshold requires.
	RejectBelowThreshold Rejection = "below_threshold"
	// RejectReplayed: an older spec than the one already accepted. It is a
	// warning, not an error: a lagging replica can serve an old value.
	RejectReplayed Rejection = "replayed"
	// RejectEquivocation: the accepted serial reused with other content.
	RejectEquivocation Rejection = "equivocation"
	// RejectExpired: a new spec whose expiry has passed.
	RejectExpired Rejection = "expired"
	// RejectNotYetValid: issued further in the future than the clock skew
	// allows.
	RejectNotYetValid Rejection = "not_yet_valid"
	// RejectSerialAhead: the serial is above spec.SerialCeiling (the
	// current Unix time plus a day); accepting it would lock the node out
	// of every lower serial.
	RejectSerialAhead Rejection = "serial_ahead"
	// RejectInvalid: the spec as a whole (serial, times) is invalid. An
	// invalid entry does not reject the spec; it fails on its own.
	RejectInvalid Rejection = "invalid"
	// RejectError: the spec could not be checked at all (the replay ledger
	// is unreadable, the node's trust settings are wrong). Retrying may
	// help once the cause is fixed.
	RejectError Rejection = "error"
)

// The outcome words of a spec a node saw: one word per way a node treats a
// spec. They are the status document's seen outcome and what `mms status`,
// `mms put --wait` and `mms events` print. Every Rejection has one
// ([Rejection.Outcome]); several share a word.
const (
	// SeenApplied: the node accepted the spec (its entries say how each
	// went).
	SeenApplied = "applied"
	// SeenIgnoredOlder: an older serial than the applied one (a replay, or
	// a lagging replica); ignored.
	SeenIgnoredOlder = "ignored-older"
	// SeenEquivocation: the applied serial with other content; refused.
	SeenEquivocation = "equivocation"
	// SeenUntrusted: not signed by enough of the node's trusted keys (no
	// signature, a bad one, an unknown key, below the threshold).
	SeenUntrusted = "untrusted"
	// SeenExpired: a new spec whose expiry has passed.
	SeenExpired = "expired"
	// SeenNotYetValid: issued further in the future than the clock skew
	// allows.
	SeenNotYetValid = "not-yet-valid"
	// SeenSerialAhead: a serial implausibly far ahead (beyond the current
	// time plus a day): accepting it would lock the node out of every
	// later spec.
	SeenSerialAhead = "serial-ahead"
	// SeenMalformed: the envelope or payload does not decode.
	SeenMalformed = "malformed"
	// SeenInvalid: the spec as a whole (serial, times) is invalid.
	SeenInvalid = "invalid"
	// SeenLegacyRefused: a v1 envelope the node does not accept.
	SeenLegacyRefused = "legacy-refused"
	// SeenMissing: there is no spec to look at (the KV key is missing or
	// was deleted); the node keeps running what it runs.
	SeenMissing = "missing"
	// SeenError: the spec could not be checked at all (an unreadable
	// replay ledger, broken trust settings).
	SeenError = "error"
	// SeenApplying: the node accepted the spec and is applying it (a
	// download is under way); the pass's end says how it went. Not a
	// rejection.
	SeenApplying = "applying"
)

// SeenRefused reports whether the outcome word is a spec the node did not
// apply and will not: every word but applied, applying and missing (no
// spec at all is nothing to refuse).
func SeenRefused(outcome string) bool {
	return outcome != SeenApplied && outcome != SeenApplying && outcome != SeenMissing
}

// rejections is the one table of the ways a node refuses a spec: the kind
// its events carry, the sentinel error the kind is read from (most
// specific first; nil for the kinds the caller names), the outcome word
// people see, and whether it needs only a warning (the running machines
// are right: an older spec, or none at all).
var rejections = []struct {
	kind    Rejection
	err     error
	outcome string
	warning bool
}{
	{RejectReplayed, packer.ErrReplayed, SeenIgnoredOlder, true},
	{RejectEquivocation, packer.ErrEquivocation, SeenEquivocation, false},
	{RejectExpired, packer.ErrExpired, SeenExpired, false},
	{RejectNotYetValid, packer.ErrNotYetValid, SeenNotYetValid, false},
	{RejectSerialAhead, packer.ErrSerialAhead, SeenSerialAhead, false},
	{RejectUnsigned, packer.ErrUnsigned, SeenUntrusted, false},
	{RejectBadSignature, packer.ErrBadSignature, SeenUntrusted, false},
	{RejectUnknownKey, packer.ErrUnknownKey, SeenUntrusted, false},
	{RejectBelowThreshold, packer.ErrBelowThreshold, SeenUntrusted, false},
	{RejectLegacy, packer.ErrLegacyRefused, SeenLegacyRefused, false},
	{RejectMalformed, packer.ErrMalformed, SeenMalformed, false},
	{RejectInvalid, spec.ErrInvalid, SeenInvalid, false},
	{RejectMissing, nil, SeenMissing, true},
	{RejectError, nil, SeenError, false},
}

// RejectionOf classifies an error from opening or validating a spec. Errors
// that match no sentinel are RejectError.
func RejectionOf(err error) Rejection {
	if err == nil {
		return ""
	}
	for _, r := range rejections {
		if r.err != nil && errors.Is(err, r.err) {
			return r.kind
		}
	}
	return RejectError
}

// Warning reports whether the rejection only needs a warning: a replayed
// older spec (the running machines are right) or a missing spec (nothing
// to act on; the running machines keep running).
func (r Rejection) Warning() bool {
	for _, row := range rejections {
		if row.kind == r {
			return row.warning
		}
	}
	return false
}

// Outcome returns the outcome word (Seen…) of a spec in envelope format
// ("v1", "v2" or "" when unknown) that the manager treated as r: SeenApplied
// for the empty Rejection, SeenError for a kind this version does not know
// (from a newer agent). A v1 spec "replayed" is legacy-refused: v1 specs
// have no serial, one is older only because the node accepted a v2 spec,
// after which it refuses v1.
func (r Rejection) Outcome(format string) string {
	if r == "" {
		return SeenApplied
	}
	if r == RejectReplayed && format == "v1" {
		return SeenLegacyRefused
	}
	for _, row := range rejections {
		if row.kind == r {
			return row.outcome
		}
	}
	return SeenError
}

// RejectionOutcomes returns the outcome words of a spec that was not
// applied, each once, in the table's order: the list a help text shows.
func RejectionOutcomes() []string {
	var words []string
	for _, row := range rejections {
		if !slices.Contains(words, row.outcome) {
			words = append(words, row.outcome)
		}
	}
	return words
}
