package manager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"

	_ "github.com/mms-io/mms/watchers/timer"
)

// testMachineYAML is a valid machine.yaml for name at version.
func testMachineYAML(name, version string) string {
	return fmt.Sprintf(`name: %s
version: %s
initial_state: idle
transitions:
  - name: tick
    from: [idle]
    destination: idle
watchers:
  - name: clock
    type: timer
    state_match: [idle]
    fail_transition: tick
    properties:
      timer: 1h
`, name, version)
}

// testArchive is a built machine archive and the entry that pins it.
type testArchive struct {
	data []byte
	info packer.ArchiveInfo
}

// buildArchive archives files (path → content; machine.yaml for name at
// version is added unless files has one) as machine name.
func buildArchive(t testing.TB, name, version string, files map[string]string) testArchive {
	t.Helper()
	dir := t.TempDir()
	if _, ok := files[packer.MachineFile]; !ok {
		writeTestFile(t, filepath.Join(dir, packer.MachineFile), testMachineYAML(name, version))
	}
	for p, content := range files {
		writeTestFile(t, filepath.Join(dir, filepath.FromSlash(p)), content)
	}
	var buf bytes.Buffer
	info, err := packer.CreateArchive(t.Context(), dir, name, &buf)
	if err != nil {
		t.Fatalf("CreateArchive(%s) = %v", name, err)
	}
	return testArchive{data: buf.Bytes(), info: info}
}

func writeTestFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// entry is the spec entry for a at source.
func (a testArchive) entry(source string) spec.Machine {
	return spec.Machine{
		Name:           a.info.Name,
		Source:         source,
		Checksum:       a.info.Checksum,
		VerifyChecksum: a.info.VerifyChecksum,
		Size:           a.info.Size,
	}
}

// fileServer serves archives by path and counts requests. It records the
// Authorization header of every request.
type fileServer struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	requests atomic.Int64
	auth     []string
}

func newFileServer(t testing.TB, tls bool) *fileServer {
	t.Helper()
	fs := &fileServer{files: make(map[string][]byte)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.requests.Add(1)
		fs.mu.Lock()
		fs.auth = append(fs.auth, r.Header.Get("Authorization"))
		data, ok := fs.files[r.URL.Path]
		fs.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(data)
	})
	if tls {
		fs.Server = httptest.NewTLSServer(h)
	} else {
		fs.Server = httptest.NewServer(h)
	}
	t.Cleanup(fs.Close)
	return fs
}

// put serves data at path and returns its URL.
func (fs *fileServer) put(path string, data []byte) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.files[path] = data
	return fs.URL + path
}

// authHeaders returns the Authorization headers seen so far.
func (fs *fileServer) authHeaders() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.auth...)
}

// testEnv is an installer over fresh M and S directories.
type testEnv struct {
	inst     *Installer
	machines string
	state    string
	logs     *syncbuf.Buffer
}

// newTestEnv returns an installer whose fetcher uses cfg (the TLS client
// of srv when set) with fast retries.
func newTestEnv(t testing.TB, srv *httptest.Server, cfg FetchConfig) *testEnv {
	t.Helper()
	root := t.TempDir()
	env := &testEnv{machines: filepath.Join(root, "machines"), state: filepath.Join(root, "state"), logs: &syncbuf.Buffer{}}
	log := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if srv != nil && cfg.Client == nil {
		cfg.Client = srv.Client()
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	if cfg.CredentialsDir == "" {
		cfg.CredentialsDir = filepath.Join(env.state, "credentials")
	}
	cfg.Log = log
	f, err := NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env.inst, err = NewInstaller(InstallerConfig{MachinesDir: env.machines, StateDir: env.state, Fetcher: f, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// reopen returns a new Installer over the same directories, as after a
// restart. The old one's background deletions end first: a process that
// restarts has stopped deleting.
func (env *testEnv) reopen(t testing.TB) *Installer {
	t.Helper()
	waitCleanup(t, env.inst)
	inst, err := NewInstaller(InstallerConfig{MachinesDir: env.machines, StateDir: env.state, Fetcher: env.inst.fetcher,
		Log: env.inst.log})
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// waitCleanup waits for inst's background deletions.
func waitCleanup(t testing.TB, inst *Installer) {
	t.Helper()
	if err := inst.WaitCleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// treeHash is one hash over treetest.Snapshot(dir).
func treeHash(t testing.TB, dir string) string {
	t.Helper()
	snap := treetest.Snapshot(t, dir)
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(snap)) {
		fmt.Fprintf(h, "%s\x00%s\x00", k, snap[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// assertNoLeftovers fails if M holds a stage or trash directory, or the
// record store a temp file, once the installer's background deletions are
// over.
func assertNoLeftovers(t testing.TB, env *testEnv) {
	t.Helper()
	waitCleanup(t, env.inst)
	leftover := map[string]func(string) bool{
		env.machines: func(n string) bool {
			return strings.HasPrefix(n, stagePrefix) || strings.HasPrefix(n, trashPrefix)
		},
		filepath.Join(env.state, "installed"): func(n string) bool { return strings.HasPrefix(n, recordTempPrefix) },
	}
	for dir, isLeftover := range leftover {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if n := e.Name(); isLeftover(n) {
				t.Errorf("leftover %s in %s", n, dir)
			}
		}
	}
}
