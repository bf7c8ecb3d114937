package packer

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
type FileLedger struct {
	path string
	mu   sync.Mutex // serializes Accept's read-check-write
}

var _ Ledger = (*FileLedger)(nil)

// NewFileLedger returns a ledger kept in the file at path. Nothing is read
// or written until Last or Accept is called.
func NewFileLedger(path string) *FileLedger {
	return &FileLedger{path: path}
}

// Last reads the ledger file. A missing file means no spec was accepted yet.
func (l *FileLedger) Last() (Record, bool, error) {
	data, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("reading replay ledger: %w", err)
	}
	var f ledgerFile
	if err := unmarshalEnvelopeStrict(data, &f); err != nil {
		return Record{}, false, fmt.Errorf("reading replay ledger %s: %w: %w", l.path, ErrCorruptLedger, err)
	}
	if f.Version != ledgerFileVersion {
		return Record{}, false, fmt.Errorf("reading replay ledger %s: %w: version %d, want %d", l.path, ErrCorruptLedger, f.Version, ledgerFileVersion)
	}
	if err := checkLedgerRecord(f.Last); err != nil {
		return Record{}, false, fmt.Errorf("reading replay ledger %s: %w: %w", l.path, ErrCorruptLedger, err)
	}
	return f.Last, true, nil
}

// Accept records r, refusing one that is older than (ErrReplayed) or
// reuses the serial of (ErrEquivocation) the recorded spec. A v1 record's
// Envelope is dropped (see Record.Envelope).
func (l *FileLedger) Accept(r Record) error {
	if err := checkLedgerRecord(r); err != nil {
		return fmt.Errorf("recording spec in replay ledger: %w", err)
	}
	if r.Format == FormatV1 {
		r.Envelope = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok, err := l.Last()
	if err != nil {
		return err
	}
	if ok {
		unchanged, err := checkReplay(last, r.Format, r.Serial, r.Digest)
		if err != nil {
			return fmt.Errorf("recording spec in replay ledger: %w", err)
		}
		if unchanged {
			return nil
		}
	}
	data, err := json.MarshalIndent(ledgerFile{Version: ledgerFileVersion, Last: r}, "", "  ")
	if err != nil {
		return fmt.Errorf("recording spec in replay ledger: %w", err)
	}
	if err := atomicfile.WriteFile(l.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing replay ledger: %w", err)
	}
	return nil
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
