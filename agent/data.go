package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/watchers"
)

// DataFile is the name of a machine's data file inside its data directory
// (<DataDir>/<machine name>/), which lives outside the machine's code
// directory so that installing a new version of the machine keeps it.
const DataFile = "machine_data.json"

// maxDataFileSize caps the data file read at open; a larger file is treated
// as corrupt.
const maxDataFileSize = 64 << 20

// FileDataStore is a machine's data, kept in memory and persisted as one
// JSON object with an atomic write (temp file in the same directory, fsync,
// rename, fsync of the directory) on every change. Values are normalised
// through JSON when stored, so Get returns the same types before and after
// a restart (numbers are float64, objects map[string]any). It is safe for
// concurrent use.
type FileDataStore struct {
	path string

	mu   sync.Mutex
	data map[string]any
}

var _ watchers.DataStore = (*FileDataStore)(nil)

// OpenDataStore opens the data store in dir (creating dir with mode 0700).
// A data file that cannot be decoded is moved aside to
// machine_data.json.corrupt-<time> and logged at warn, and the store starts
// empty; it is never silently discarded.
func OpenDataStore(dir string, log *slog.Logger) (*FileDataStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create machine data directory: %w", err)
	}
	s := &FileDataStore{path: filepath.Join(dir, DataFile), data: map[string]any{}}
	b, err := readCapped(s.path, maxDataFileSize)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil && !errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("read machine data: %w", err)
	}
	var data map[string]any
	derr := err
	if derr == nil {
		derr = json.Unmarshal(b, &data)
	}
	if derr != nil || data == nil {
		if derr == nil {
			derr = errors.New("not a JSON object")
		}
		aside := fmt.Sprintf("%s.corrupt-%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"))
		if err := os.Rename(s.path, aside); err != nil {
			return nil, fmt.Errorf("move corrupt machine data %s aside: %w", s.path, err)
		}
		log.Warn("machine data file is corrupt; moved aside, starting empty", "path", s.path, "moved_to", aside, "error", derr)
		return s, nil
	}
	s.data = data
	return s, nil
}

// Path returns the data file's path.
func (s *FileDataStore) Path() string { return s.path }

// Get returns the value stored under key.
func (s *FileDataStore) Get(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return v, ok
}

// Put stores value under key and persists the store. On error nothing
// changes, in memory or on disk.
func (s *FileDataStore) Put(key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("store machine data %q: %w", key, err)
	}
	var norm any
	if err := json.Unmarshal(b, &norm); err != nil {
		return fmt.Errorf("store machine data %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.data)
	next[key] = norm
	if err := s.save(next); err != nil {
		return fmt.Errorf("store machine data %q: %w", key, err)
	}
	s.data = next
	return nil
}

// Delete removes key and persists the store; a missing key is not an error.
func (s *FileDataStore) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[key]; !ok {
		return nil
	}
	next := maps.Clone(s.data)
	delete(next, key)
	if err := s.save(next); err != nil {
		return fmt.Errorf("delete machine data %q: %w", key, err)
	}
	s.data = next
	return nil
}

// All returns a copy of every key and value.
func (s *FileDataStore) All() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.data)
}

// save writes data to the file atomically. Callers hold s.mu.
func (s *FileDataStore) save(data map[string]any) error {
	b, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, append(b, '\n'), 0o600)
}

var errTooLarge = errors.New("file too large")

// readCapped reads at most limit bytes of path; a longer file is an error.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", errTooLarge, path, limit)
	}
	return buf.Bytes(), nil
}
