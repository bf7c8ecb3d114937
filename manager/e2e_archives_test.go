package manager_test

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// archiveServer is the "repository": an httptest server of archives that
// counts the requests for each path.
type archiveServer struct {
	srv *httptest.Server

	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

func newArchiveServer(tb testing.TB) *archiveServer {
	tb.Helper()
	s := &archiveServer{files: map[string][]byte{}, hits: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		data, ok := s.files[r.URL.Path]
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(data)
	}))
	tb.Cleanup(s.srv.Close)
	return s
}

// serve publishes data at path and returns its URL.
func (s *archiveServer) serve(path string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
	return s.srv.URL + path
}

// requests returns how many times each path was requested.
func (s *archiveServer) requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.hits)
}

// testArchive is a machine archive served by an archiveServer.
type testArchive struct {
	info packer.ArchiveInfo
	url  string
	data []byte
}

// entry is a spec entry for the archive.
func (a testArchive) entry(match string) spec.Machine {
	return spec.Machine{
		Name: a.info.Name, Source: a.url, Checksum: a.info.Checksum,
		VerifyChecksum: a.info.VerifyChecksum, Match: match,
	}
}

// buildArchive writes files (path → content; names ending in .sh are
// executable) into a machine directory, archives it with
// packer.CreateArchive and serves it.
func buildArchive(tb testing.TB, s *archiveServer, name, version string, files map[string]string) testArchive {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), name)
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			tb.Fatal(err)
		}
	}
	var buf bytes.Buffer
	info, err := packer.CreateArchive(tb.Context(), dir, name, &buf)
	if err != nil {
		tb.Fatalf("CreateArchive(%s) = %v", name, err)
	}
	url := s.serve(fmt.Sprintf("/%s-%s.tar.gz", name, version), buf.Bytes())
	return testArchive{info: info, url: url, data: buf.Bytes()}
}

// recordingMachine returns the files of a small real machine: at start its
// exec watcher runs record.sh, whose JSON output (parse_as_data) stores
// ran_<tag> in the machine's data, and moves the machine to "running".
// extraWatchers is appended to the watchers list verbatim.
func recordingMachine(name, version, tag, extraWatchers string) map[string]string {
	return map[string]string{
		"machine.yaml": fmt.Sprintf(`name: %s
version: %s
initial_state: start
transitions:
  - name: recorded
    from: [start]
    destination: running
watchers:
  - name: record
    type: exec
    state_match: [start]
    success_transition: recorded
    interval: 1h
    properties:
      command: record.sh
      parse_as_data: true
%s`, name, version, extraWatchers),
		"record.sh": fmt.Sprintf("#!/bin/sh\necho '{\"ran_%s\": \"%s\"}'\n", tag, version),
	}
}

// assertNoTemporaries fails if the machines directory holds an installer
// temporary (.stage-*, .trash-*) or the manager's install records a temp
// file once the installer's background deletions are over (it polls).
func assertNoTemporaries(tb testing.TB, machines, records string) {
	tb.Helper()
	natstest.Eventually(tb, e2eWait, func() error {
		var leftovers []string
		for _, dir := range []string{machines, records} {
			entries, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			for _, e := range entries {
				n := e.Name()
				if strings.HasPrefix(n, ".stage-") || strings.HasPrefix(n, ".trash-") || (dir == records && (strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json"))) {
					leftovers = append(leftovers, filepath.Join(dir, n))
				}
			}
		}
		if len(leftovers) > 0 {
			return fmt.Errorf("leftovers: %v", leftovers)
		}
		return nil
	})
}
