package packer

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mms-io/mms/internal/atomicfile"
)

// Ledger remembers the last spec Open accepted, so Open can refuse replays.
// Open reads it with Last and records a new spec with Accept before it
// returns the spec.
type Ledger interface {
	// Last returns the last accepted record; ok is false when none was
	// accepted yet. An unreadable or corrupt ledger is an error, never "none".
	Last() (rec Record, ok bool, err error)
	// Accept durably records r as the last accepted spec.
	Accept(r Record) error
}

// Record is what a Ledger keeps about the last accepted spec.
type Record struct {
	// Serial is the spec's serial (0 for v1).
	Serial uint64 `json:"serial"`
	// Digest is Opened.Digest: the hex SHA-256 of the signed payload bytes.
	Digest string `json:"digest"`
	// Format is the envelope format.
	Format Format `json:"format"`
	// Envelope is the accepted envelope, kept so a node can re-verify and
	// reconcile its last-good spec offline. It is set for v2 only: v1
	// entries may carry basic-auth credentials in clear text, which must
	// never be written to disk, so for v1 only the digest is kept.
	Envelope []byte `json:"envelope,omitempty"`
	// AcceptedAt is when Open accepted the spec (OpenOptions.Now).
	AcceptedAt time.Time `json:"accepted_at"`
	// Reset, when set, says the spec was accepted out of serial order by
	// a signed reset spec, and which record it replaced.
	Reset *HistoryReset `json:"reset,omitempty"`
}

// HistoryReset records that the replay history was reset: which accepted
// spec was forgotten, and why.
type HistoryReset struct {
	// FromSerial and FromDigest identify the record that was forgotten.
	FromSerial uint64 `json:"from_serial"`
	FromDigest string `json:"from_digest"`
	// Reason says what reset it: a signed reset spec, or the operator.
	Reason string `json:"reason"`
}

// ErrCorruptLedger means a ledger file exists but cannot be read as a
// ledger. It is never treated as an empty ledger, since that would reopen
// the replay window; an operator must inspect and remove the file.
var ErrCorruptLedger = errors.New("replay ledger is corrupt")

// ledgerFileVersion is the version of the FileLedger file layout.
const ledgerFileVersion = 1

// ledgerFile is the JSON layout of a FileLedger file.
type ledgerFile struct {
	Version int    `json:"version"`
	Last    Record `json:"last"`
}

// FileLedger is a Ledger kept in one JSON file. Every Accept replaces the
// file atomically (temp file in the same directory, fsync, rename, fsync of
// the directory), so a crash leaves the old record or the new one, never a
// mix. The directory must exist. Accept itself refuses an older serial or a
// reused one, so two racing Opens cannot overwrite each other's record.
//
// A FileLedger keeps the record it last read or wrote in memory and reads
// the file again only when the file changed (another inode, size or
// modification time), so an agent does not parse its last spec's envelope
// (up to a megabyte) several times per spec. The one writer is the agent
// holding the state directory's lock.
type FileLedger struct {
	path string

	mu     sync.Mutex  // serializes Accept's read-check-write; guards the fields below
	cached Record      // the record in the file described by stat
	stat   fs.FileInfo // nil: nothing cached
}

var _ Ledger = (*FileLedger)(nil)

// NewFileLedger returns a ledger kept in the file at path. Nothing is read
// or written until Last or Accept is called.
func NewFileLedger(path string) *FileLedger {
	return &FileLedger{path: path}
}

// Last reads the ledger file. A missing file means no spec was accepted yet.
func (l *FileLedger) Last() (Record, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last()
}

// last is Last with l.mu held: the cached record while the file is the one
// it came from, else the file's.
func (l *FileLedger) last() (Record, bool, error) {
	if l.stat != nil {
		// Every spec opened asks, most often of an unchanged file: a
		// stat of it says so without opening it.
		if fi, err := os.Stat(l.path); err == nil && atomicfile.Unchanged(l.stat, fi) {
			return l.cached, true, nil
		}
	}
	f, err := os.Open(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		l.stat = nil
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("reading replay ledger: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Record{}, false, fmt.Errorf("reading replay ledger: %w", err)
	}
	l.stat = nil
	data, err := io.ReadAll(f)
	if err != nil {
		return Record{}, false, fmt.Errorf("reading replay ledger: %w", err)
	}
	rec, err := l.parse(data)
	if err != nil {
		return Record{}, false, err
	}
	l.cached, l.stat = rec, fi
	return rec, true, nil
}

// asRead returns r as reading it back from the file would: its own copy of
// the envelope, the time without a monotonic reading and in the zone its
// JSON form names.
func asRead(r Record) Record {
	r.Envelope = slices.Clone(r.Envelope)
	if b, err := r.AcceptedAt.MarshalJSON(); err == nil {
		_ = r.AcceptedAt.UnmarshalJSON(b)
	}
	if r.Reset != nil {
		reset := *r.Reset
		r.Reset = &reset
	}
	return r
}

// parse decodes and checks the contents of a ledger file.
func (l *FileLedger) parse(data []byte) (Record, error) {
	var f ledgerFile
	if err := unmarshalEnvelopeStrict(data, &f); err != nil {
		return Record{}, fmt.Errorf("reading replay ledger %s: %w: %w", l.path, ErrCorruptLedger, err)
	}
	if f.Version != ledgerFileVersion {
		return Record{}, fmt.Errorf("reading replay ledger %s: %w: version %d, want %d", l.path, ErrCorruptLedger, f.Version, ledgerFileVersion)
	}
	if err := checkLedgerRecord(f.Last); err != nil {
		return Record{}, fmt.Errorf("reading replay ledger %s: %w: %w", l.path, ErrCorruptLedger, err)
	}
	return f.Last, nil
}

// Accept records r, refusing one that is older than (ErrReplayed) or
// reuses the serial of (ErrEquivocation) the recorded spec, unless r.Reset
// names exactly the recorded spec (a reset replaces that record and no
// other). A v1 record's Envelope is dropped (see Record.Envelope).
func (l *FileLedger) Accept(r Record) error {
	if err := checkLedgerRecord(r); err != nil {
		return fmt.Errorf("recording spec in replay ledger: %w", err)
	}
	if r.Format == FormatV1 {
		r.Envelope = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok, err := l.last()
	if err != nil {
		return err
	}
	switch {
	case r.Reset != nil:
		if !ok || last.Serial != r.Reset.FromSerial || last.Digest != r.Reset.FromDigest {
			return fmt.Errorf("recording spec in replay ledger: the reset replaces serial %d, but the ledger holds another record", r.Reset.FromSerial)
		}
	case ok:
		unchanged, err := checkReplay(last, r.Format, r.Serial, r.Digest)
		if err != nil {
			return fmt.Errorf("recording spec in replay ledger: %w", err)
		}
		if unchanged {
			return nil
		}
	}
	return l.write(r)
}

// write replaces the ledger file with one holding r. l.mu is held.
func (l *FileLedger) write(r Record) error {
	// Compact: most of the file is the envelope (up to 1 MiB, base64),
	// which indenting would only walk through again.
	data, err := json.Marshal(ledgerFile{Version: ledgerFileVersion, Last: r})
	if err != nil {
		return fmt.Errorf("recording spec in replay ledger: %w", err)
	}
	l.stat = nil
	if err := atomicfile.WriteFile(l.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing replay ledger: %w", err)
	}
	// The file is the one just written: only the agent holding the state
	// directory's lock writes it. Without a stat the next Last reads it.
	if fi, err := os.Stat(l.path); err == nil {
		l.cached, l.stat = asRead(r), fi
	}
	return nil
}

// ErrResetMismatch is wrapped by the error [FileLedger.Reset] returns when
// the ledger does not hold the serial the operator asked to forget.
var ErrResetMismatch = errors.New("spec history does not hold that serial")

// Reset forgets the accepted spec when it has serial, so that the next
// spec Open sees is accepted whatever its serial or format (a v1 spec
// after a v2 one, a lower serial after a bad high one). It is the
// operator's local way back (`mms agent --reset-spec-history SERIAL`):
// naming the serial makes it a no-op once done, so a flag left in a
// service file cannot reset the history on every start. The file is not
// deleted but renamed to <path>.reset-<UTC time>, for the record. It
// returns the forgotten record; a ledger that holds another serial (or
// none) is an error wrapping [ErrResetMismatch] that names what it holds.
func (l *FileLedger) Reset(serial uint64, now time.Time) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok, err := l.last()
	switch {
	case err != nil:
		return Record{}, fmt.Errorf("reset spec history: %w", err)
	case !ok:
		return Record{}, fmt.Errorf("reset spec history: %w: no spec was accepted yet", ErrResetMismatch)
	case last.Serial != serial:
		return last, fmt.Errorf("reset spec history: %w: the last accepted spec has serial %d, not %d", ErrResetMismatch, last.Serial, serial)
	}
	l.stat = nil
	aside := l.path + ".reset-" + now.UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(l.path, aside); err != nil {
		return Record{}, fmt.Errorf("reset spec history: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(l.path)); err != nil {
		return Record{}, fmt.Errorf("reset spec history: %w", err)
	}
	return last, nil
}

// checkLedgerRecord checks the fields of a record that Open always sets.
func checkLedgerRecord(r Record) error {
	if r.Format != FormatV1 && r.Format != FormatV2 {
		return fmt.Errorf("format %d is neither v1 nor v2", int(r.Format))
	}
	if b, err := hex.DecodeString(r.Digest); err != nil || len(b) != 32 || hex.EncodeToString(b) != r.Digest {
		return errors.New("digest is not 64 lowercase hex characters")
	}
	if r.Format == FormatV1 && r.Serial != 0 {
		return fmt.Errorf("v1 record has serial %d, want 0", r.Serial)
	}
	if r.Format == FormatV2 && r.Serial == 0 {
		return errors.New("v2 record has serial 0")
	}
	return nil
}
