package agent

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/mms-io/mms/spec"
)

// maxFactsSize caps a facts file.
const maxFactsSize = 16 << 20

// BuiltinFacts returns the facts mms knows without a facts file: hostname,
// os and arch (Go's GOOS and GOARCH) and cpus (the number of CPUs).
func BuiltinFacts() map[string]any {
	host, _ := os.Hostname()
	return map[string]any{
		"hostname": host,
		"os":       runtime.GOOS,
		"arch":     runtime.GOARCH,
		"cpus":     float64(runtime.NumCPU()),
	}
}

// LoadFacts reads a facts file, a JSON or YAML object, and returns it
// merged over [BuiltinFacts]: the file's values win, so a file may pin
// hostname. Values are normalised through JSON (numbers are float64). An
// empty path returns the built-in facts only.
func LoadFacts(path string) (map[string]any, error) {
	facts := BuiltinFacts()
	if path == "" {
		return facts, nil
	}
	b, err := readCapped(path, maxFactsSize)
	if err != nil {
		return nil, fmt.Errorf("read facts: %w", err)
	}
	file, err := spec.ParseFacts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	maps.Copy(facts, file)
	return facts, nil
}

// FactsFile serves the facts of a file, re-reading it only when its
// modification time or size changes, and otherwise returning the cached
// facts (Choria re-parses the file on every use). It is safe for
// concurrent use.
type FactsFile struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	mtime time.Time
	size  int64
	facts map[string]any
}

// NewFactsFile returns a FactsFile for path; an empty path serves the
// built-in facts only. Nothing is read until the first Facts call.
func NewFactsFile(path string, log *slog.Logger) *FactsFile {
	return &FactsFile{path: path, log: log}
}

// Facts returns the current facts, a fresh top-level copy per call. When
// the file cannot be read or parsed the last good facts are kept (the
// built-in ones if there never were any) and the problem is logged.
func (f *FactsFile) Facts() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path == "" {
		if f.facts == nil {
			f.facts = BuiltinFacts()
		}
		return maps.Clone(f.facts)
	}
	st, err := os.Stat(f.path)
	switch {
	case err != nil:
		if f.facts == nil {
			f.log.Warn("cannot read facts file; using built-in facts", "path", f.path, "error", err)
			f.facts = BuiltinFacts()
		}
	case f.facts == nil || !st.ModTime().Equal(f.mtime) || st.Size() != f.size:
		facts, err := LoadFacts(f.path)
		if err != nil {
			f.log.Warn("cannot load facts file; keeping the previous facts", "path", f.path, "error", err)
			if f.facts == nil {
				f.facts = BuiltinFacts()
			}
			f.mtime, f.size = st.ModTime(), st.Size() // retry on the next change, not every call
			break
		}
		f.facts, f.mtime, f.size = facts, st.ModTime(), st.Size()
	}
	return maps.Clone(f.facts)
}
