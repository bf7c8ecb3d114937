package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/spec"
)

// maxRecordSize caps a record file; real ones are well under 2 KiB.
const maxRecordSize = 64 << 10

// recordFile is what S/installed/<name>.json holds: the Record of the
// contract plus what rollback and crash recovery need.
type recordFile struct {
	Record
	// PreviousRecord is the full record of the version kept in
	// .prev-<name>; Record.Previous summarizes it.
	PreviousRecord *Record `json:"previous_record,omitempty"`
	// Undo is the record as it was before the swap in progress (phase
	// swapping only); nil when the swap installs a machine that had no
	// record.
	Undo *recordFile `json:"undo,omitempty"`
}

// plain returns the contract Record of rf.
func (rf *recordFile) plain() Record { return rf.Record }

// settled returns rf as it is once no swap is in progress.
func (rf *recordFile) settled() *recordFile {
	c := *rf
	c.Undo = nil
	c.Phase = PhaseInstalled
	return &c
}

// withPrevious sets the version kept in .prev-<name> (nil: none).
func (rf *recordFile) withPrevious(prev *Record) {
	rf.PreviousRecord, rf.Previous = nil, nil
	if prev != nil {
		p := *prev
		p.Previous, p.Phase = nil, PhaseInstalled
		rf.PreviousRecord = &p
		rf.Previous = &PreviousVersion{Checksum: p.Checksum, VerifyChecksum: p.VerifyChecksum, Serial: p.Serial}
	}
}

// recordStore keeps one record file per installed machine in dir
// (S/installed). Every write is atomic: temp file, fsync, rename, fsync of
// the directory.
//
// It remembers the bytes of each record it read or wrote with the stat of
// its file then, and reads a record again only when a stat of the file
// says it is another file or changed (as the replay ledger does): every
// reconcile pass reads the record of each installed machine, and on a node
// with many machines opening each file every time was most of an
// unchanged pass. The bytes are decoded on every read, so a caller may
// change what it gets.
type recordStore struct {
	dir string

	mu   sync.Mutex
	seen map[string]seenRecord // by machine name
}

// seenRecord is a record file's content and its stat when it was read or
// written.
type seenRecord struct {
	data []byte
	stat fs.FileInfo
}

// newRecordStore returns the store of the records in dir.
func newRecordStore(dir string) *recordStore { return &recordStore{dir: dir} }

// recordTempPrefix starts the names of temp files in the store: the
// atomicfile package writes a temp file named "." + the record's name + a
// random suffix next to it. Records never start with a dot (machine names
// cannot).
const recordTempPrefix = "."

func (s *recordStore) path(name string) string { return filepath.Join(s.dir, name+".json") }

// read returns name's record, or nil if there is none.
func (s *recordStore) read(name string) (*recordFile, error) {
	data, err := s.readFile(name)
	if err != nil || data == nil {
		return nil, err
	}
	rf, err := decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("install record %s: %w", s.path(name), err)
	}
	if rf.Name != name {
		return nil, fmt.Errorf("install record %s names machine %q", s.path(name), rf.Name)
	}
	return rf, nil
}

// readFile returns the content of name's record file (nil when there is
// none): what the store remembers when a stat says the file is unchanged,
// else the file's.
func (s *recordStore) readFile(name string) ([]byte, error) {
	path := s.path(name)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		s.forget(name)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read install record: %w", err)
	}
	s.mu.Lock()
	seen, ok := s.seen[name]
	s.mu.Unlock()
	if ok && atomicfile.Unchanged(seen.stat, fi) {
		return seen.data, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		s.forget(name)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read install record: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read install record %s: %w", path, err)
	}
	// The stat of the file read, not of the name before: a record
	// replaced in between is remembered with its own.
	if fi, err := f.Stat(); err == nil && len(data) <= maxRecordSize {
		s.remember(name, data, fi)
	}
	return data, nil
}

// remember keeps data as the content of name's record file, whose stat is
// fi.
func (s *recordStore) remember(name string, data []byte, fi fs.FileInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[string]seenRecord)
	}
	s.seen[name] = seenRecord{data: data, stat: fi}
}

// forget drops what the store remembers of name's record.
func (s *recordStore) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.seen, name)
}

// decodeRecord parses a record file strictly.
func decodeRecord(data []byte) (*recordFile, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("larger than %d bytes", maxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rf recordFile
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode: data after the JSON object")
	}
	if err := rf.check(true); err != nil {
		return nil, err
	}
	return &rf, nil
}

// check validates a decoded record; top is false for nested ones.
func (rf *recordFile) check(top bool) error {
	if err := spec.ValidName(rf.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	switch rf.Phase {
	case PhaseInstalled:
		if rf.Undo != nil {
			return errors.New("undo set outside a swap")
		}
	case PhaseSwapping:
		if !top {
			return errors.New("nested record in phase swapping")
		}
	default:
		return fmt.Errorf("unknown phase %q", rf.Phase)
	}
	if (rf.Previous == nil) != (rf.PreviousRecord == nil) {
		return errors.New("previous and previous_record disagree")
	}
	if p := rf.PreviousRecord; p != nil && (p.Name != rf.Name || p.Checksum != rf.Previous.Checksum ||
		p.VerifyChecksum != rf.Previous.VerifyChecksum || p.Previous != nil) {
		return errors.New("previous and previous_record disagree")
	}
	if rf.Undo != nil {
		if rf.Undo.Name != rf.Name {
			return fmt.Errorf("undo names machine %q", rf.Undo.Name)
		}
		if err := rf.Undo.check(false); err != nil {
			return fmt.Errorf("undo: %w", err)
		}
	}
	return nil
}

// write replaces rf.Name's record with rf atomically.
func (s *recordStore) write(rf *recordFile) error {
	data, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return fmt.Errorf("encode install record: %w", err)
	}
	data = append(data, '\n')
	s.forget(rf.Name)
	if err := atomicfile.WriteFile(s.path(rf.Name), data, 0o600); err != nil {
		return fmt.Errorf("write install record: %w", err)
	}
	// The file is the one just written: only the agent holding the state
	// directory's lock writes records. Without a stat the next read reads
	// it.
	if fi, err := os.Lstat(s.path(rf.Name)); err == nil {
		s.remember(rf.Name, data, fi)
	}
	return nil
}

// restore puts rf back as name's record, or removes the record if rf is
// nil.
func (s *recordStore) restore(name string, rf *recordFile) error {
	if rf == nil {
		return s.remove(name)
	}
	return s.write(rf)
}

// remove deletes name's record durably.
func (s *recordStore) remove(name string) error {
	s.forget(name)
	err := os.Remove(s.path(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove install record: %w", err)
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("remove install record: %w", err)
	}
	return nil
}

// list reads every record in the store. A record that does not decode is
// reported (with the others still returned).
func (s *recordStore) list() (map[string]*recordFile, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list install records: %w", err)
	}
	out := make(map[string]*recordFile)
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || spec.ValidName(name) != nil {
			continue
		}
		rf, err := s.read(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rf != nil {
			out[name] = rf
		}
	}
	return out, errors.Join(errs...)
}

// clean removes temp files a crash left in the store.
func (s *recordStore) clean() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("clean install records: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), recordTempPrefix) {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
