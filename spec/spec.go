// Package spec is the desired-state model of mms: the managed-machine entries
// an operator signs with `mms pack`, the spec that carries them (serial, issue
// and expiry times), their decoding and validation, the expr matchers that
// decide which node runs which machine, and the facts those matchers read.
//
// # Trust chain
//
// Nothing in a spec is trusted until the whole chain below holds; each link
// pins the next one by hash, so a single signature covers every byte a node
// installs:
//
//  1. The envelope (package packer) carries ed25519 signatures over the exact
//     payload bytes. The node verifies them against its trusted keys before
//     it parses anything, then decodes the verified bytes strictly with
//     [DecodeV2] (or [DecodeV1] for a legacy Choria envelope) and checks them
//     with [Spec.Validate].
//  2. Each [Machine] pins its archive: Checksum is the sha256 of the archive
//     bytes, checked while streaming the download, before anything is
//     extracted.
//  3. VerifyChecksum is the sha256 of the archive's SHA256SUMS file, so the
//     list of file hashes is covered by the signature too.
//  4. SHA256SUMS lists every regular file of the archive with its sha256; the
//     node installs the archive only if the extracted files are exactly that
//     set with exactly those hashes.
//
// Source and Auth only say where and how to fetch the bytes; they are not
// part of what is trusted. Anything a machine downloads at run time is outside
// this chain.
//
// # Decoding and validation
//
// Decoding ([ParseMachines] for the operator's file, [DecodeV2] and [DecodeV1]
// for signed payloads) is strict: unknown or repeated fields and values of the
// wrong type are errors. Validation ([Spec.Validate], [Machine.Validate])
// checks meaning: names, hashes, source URLs, matchers. Both report every
// problem at once, joined with [errors.Join]; each problem is a [*FieldError]
// naming the entry and field, and each wraps [ErrInvalid].
//
// # One home for each fact
//
// The wire forms of a spec (the fields of an entry, which envelope version
// carries each, their order) are described once, in wire.go, and read by
// both the decoders and the encoders ([EncodeV2], [EncodeV1]). The one
// machine-name rule ([CheckName], [ValidName]) is used by the agent, the
// manager and packer alike.
//
// # No I/O
//
// The package does no I/O of its own: matcher probes such as has_file go
// through functions the caller injects in [Env], so validation and matching
// are cheap and deterministic in tests. It never logs.
package spec

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every decoding and validation error of this
// package: the input is not an acceptable spec, machine list or matcher, and
// retrying will not help until someone changes it.
var ErrInvalid = errors.New("invalid spec")

// Verify values a [Machine] may carry.
const (
	// VerifySHA256SUMS is the only non-empty value of [Machine.Verify].
	VerifySHA256SUMS = "SHA256SUMS"
)

// Machine is one managed-machine entry of a spec: an archive to fetch, the
// checksums that pin its bytes, and an optional matcher that selects nodes.
//
// Its JSON form is described once, in wire.go: the field names are those
// of Choria's machines watcher, so v1 specs interoperate. Username and Password exist only in v1 (Choria) entries; v2
// entries name a node-local credential in Auth instead.
type Machine struct {
	// Name is the machine name and the directory it is installed in;
	// see [ValidName].
	Name string
	// Source is where the archive comes from: https://…, http://… (only
	// when the caller allows it) or nats://BUCKET/OBJECT (a JetStream object store).
	Source string
	// Checksum is the lowercase hex sha256 of the archive.
	Checksum string
	// VerifyChecksum is the lowercase hex sha256 of the archive's SHA256SUMS file.
	VerifyChecksum string
	// Verify names the checksum file inside the archive. Choria's
	// machines.json carries "SHA256SUMS"; it is accepted for compatibility
	// and the only other value is "" (meaning the same thing).
	Verify string
	// Match is an optional expr expression; empty matches every node.
	// See [CompileMatcher].
	Match string
	// Governor optionally names a fleet-wide download concurrency limit;
	// see [GovernorPattern].
	Governor string
	// Size is the optional declared size of the archive in bytes; a download
	// longer than this is cut off. v2 only.
	Size int64
	// Auth names a node-local credential used to fetch Source (v2 only);
	// it follows [NamePattern].
	Auth string
	// Username is a v1 (Choria) basic-auth user. It is honoured but never
	// written to disk or logs.
	Username string
	// Password is a v1 (Choria) basic-auth password; see Username.
	Password string
	// Health, when set, is the entry's health gate (v2 only): an upgrade
	// that is not healthy in time is rolled back on that node.
	Health *Health
	// Rollout, when set, rolls a new version out in waves (v2 only); it
	// needs Health.
	Rollout *Rollout
	// Hold, when set, is a matcher (the language of Match) for nodes that
	// keep exactly what they run of this entry (v2 only): nothing is
	// installed, upgraded or purged there, and they are left out of the
	// entry's rollout waves.
	Hold string
}

// Spec is the signed desired state: the list of machines plus the metadata
// that protects it against replay and indefinite freeze.
type Spec struct {
	// Serial increases with every spec an operator publishes; an agent
	// ignores a spec older than the last one it accepted. v1 specs have
	// serial 0; v2 specs start at 1.
	Serial uint64
	// IssuedAt is when the spec was packed.
	IssuedAt time.Time
	// Expires, when not zero, is when the spec stops being acceptable.
	Expires time.Time
	// Machines is the desired set of managed machines.
	Machines []Machine
	// ResetHistory marks a recovery spec (v2 only): a node whose last
	// accepted serial is above [SerialCeiling] (accepted before that check
	// existed, or while its clock was wrong) accepts this spec even though
	// its serial is lower, provided it was issued after that serial was
	// accepted. Every other node treats it as a normal spec. See
	// packer.Open for the exact rule.
	ResetHistory bool
}

// FieldError is one problem found while decoding or validating a spec. It
// wraps [ErrInvalid] and the underlying cause.
//
// Its text is the non-empty parts joined by ": ", for example
//
//	machine[1] "web": line 7: unknown field "chekcsum"
//	machine[0] "web": checksum: want 64 lowercase hex characters, got "abc"
//	serial: must be at least 1
type FieldError struct {
	// Entry names the machine entry, e.g. `machine[1] "web"`; it is empty
	// for problems outside any entry.
	Entry string
	// Line is the 1-based line in the operator's machines file, or 0 when
	// unknown (signed payloads report no lines).
	Line int
	// Field is the JSON name of the field at fault, or empty when the
	// problem is the entry (or document) as a whole.
	Field string
	// Err says what is wrong.
	Err error
}

// Error implements error.
func (e *FieldError) Error() string {
	parts := make([]string, 0, 4)
	if e.Entry != "" {
		parts = append(parts, e.Entry)
	}
	if e.Line > 0 {
		parts = append(parts, "line "+strconv.Itoa(e.Line))
	}
	if e.Field != "" {
		parts = append(parts, e.Field)
	}
	parts = append(parts, e.Err.Error())
	return strings.Join(parts, ": ")
}

// Unwrap returns [ErrInvalid] and the cause, so errors.Is works for both.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// entryName formats how errors name the entry at index i (-1: no index).
func entryName(i int, name string) string {
	s := "machine"
	if i >= 0 {
		s += "[" + strconv.Itoa(i) + "]"
	}
	if name != "" {
		s += " " + quote(name)
	}
	return s
}

// maxQuoted is how many bytes of a user-supplied value an error message
// repeats; longer values are cut and marked with "...".
const maxQuoted = 64

// quote returns s as a Go string literal, cut to maxQuoted bytes so that
// hostile input cannot blow up error messages.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "..."
}

// setEntry fills in the entry name of every FieldError in errs.
func setEntry(errs []error, entry string) {
	for _, err := range errs {
		if fe, ok := err.(*FieldError); ok && fe.Entry == "" {
			fe.Entry = entry
		}
	}
}
