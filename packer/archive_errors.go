package packer

import (
	"errors"
	"fmt"
)

// Kinds of archive and SHA256SUMS problems. Every error that
// [CreateArchive], [ExtractArchive], [ParseSums], [VerifyTree] and
// [TreeVerifier.Verify] return because of a bad archive, source tree,
// installed tree or SHA256SUMS wraps one of them, so callers can tell them
// apart with errors.Is. Errors in the call itself (an invalid name or pin,
// a missing or non-empty stage) and I/O errors wrap none.
var (
	// ErrUnsafeEntry marks an archive entry (or a file in an installed
	// tree) that is rejected for safety: a non-local or unclean path, a
	// link, device, FIFO or sparse entry, an entry outside the top-level
	// directory, a duplicate or a case-insensitive collision.
	ErrUnsafeEntry = errors.New("unsafe entry")

	// ErrArchiveTooLarge marks an archive that exceeds one of the [Limits]:
	// compressed size, uncompressed size, per-file size or entry count.
	ErrArchiveTooLarge = errors.New("archive too large")

	// ErrInvalidArchive marks a stream that is not a well-formed archive:
	// not gzip, a corrupt tar, trailing data, a missing SHA256SUMS or
	// machine.yaml, or a source directory that cannot be archived.
	ErrInvalidArchive = errors.New("invalid archive")

	// ErrChecksumMismatch marks an archive or SHA256SUMS file whose sha256
	// differs from the pinned value.
	ErrChecksumMismatch = errors.New("sha256 mismatch")

	// ErrSumsMismatch marks a tree whose files differ from its SHA256SUMS:
	// a file that is not listed, a listed file that is missing, or a file
	// whose digest does not match.
	ErrSumsMismatch = errors.New("files do not match SHA256SUMS")

	// ErrInvalidSums marks a SHA256SUMS file that does not parse.
	ErrInvalidSums = errors.New("invalid SHA256SUMS")
)

// EntryError reports why one archive entry, or one file of an installed
// tree, was rejected. Its message names the entry; Unwrap returns Kind (one
// of the Err sentinels of this file), so errors.Is works on it, and callers
// that report the failure (an extract_failed event) can take the entry from
// it with errors.As.
type EntryError struct {
	// Entry is the path as named in the archive (for example
	// "web/bin/run"), or relative to the tree for [VerifyTree].
	Entry string
	// Kind is the sentinel this rejection belongs to.
	Kind error
	msg  string
}

// Error returns the full message, which names the entry.
func (e *EntryError) Error() string { return e.msg }

// Unwrap returns the kind of the rejection.
func (e *EntryError) Unwrap() error { return e.Kind }

// unsafeEntry rejects entry for a safety reason; the message reads
// `unsafe entry "web/../x": path is not local`.
func unsafeEntry(entry, reason string, args ...any) *EntryError {
	return &EntryError{
		Entry: entry,
		Kind:  ErrUnsafeEntry,
		msg:   fmt.Sprintf("unsafe entry %q: %s", entry, fmt.Sprintf(reason, args...)),
	}
}

// entryErrorf builds an EntryError of the given kind with a free-form
// message, which must name the entry itself.
func entryErrorf(kind error, entry, format string, args ...any) *EntryError {
	return &EntryError{Entry: entry, Kind: kind, msg: fmt.Sprintf(format, args...)}
}

// archiveKindError is an error whose message is written out in full while
// errors.Is still finds its kind (and its cause, when there is one).
type archiveKindError struct {
	kind  error
	cause error
	msg   string
}

func (e *archiveKindError) Error() string { return e.msg }

func (e *archiveKindError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// archiveErrorf returns an error of the given kind with exactly the
// formatted message. A %w verb in format also makes its operand a cause.
func archiveErrorf(kind error, format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	return &archiveKindError{kind: kind, cause: errors.Unwrap(wrapped), msg: wrapped.Error()}
}

// archiveMaxReported caps how many individual problems one error lists.
const archiveMaxReported = 10

// archiveJoin joins problems into one error, listing at most
// archiveMaxReported of them and counting the rest.
func archiveJoin(kind error, problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	if len(problems) > archiveMaxReported {
		more := len(problems) - archiveMaxReported
		problems = append(problems[:archiveMaxReported:archiveMaxReported],
			archiveErrorf(kind, "and %d more", more))
	}
	return errors.Join(problems...)
}
