package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// The crash hook's environment variables and stderr line
// (manager/crashhook_on.go, compiled only with the mmscrashtest tag).
const (
	crashTestStep    = "MMS_CRASHTEST_STEP"
	crashTestRenames = "MMS_CRASHTEST_RENAMES"
	crashTestPaused  = "mms crashtest: paused at "
)

// crashIdentity is the identity of the crash test's agents.
const crashIdentity = "crash1"

// TestAgentCrashRecovery kills a real `mms agent` process (SIGKILL) at each
// step of an install and of a purge, and restarts it on the same state
// directory, twice: the first restart stops once crash recovery is done,
// before anything else runs, and there the machine's directory is exactly
// the old or the new version (a tree that verifies against that version's
// SHA256SUMS, or no tree where there was none) and no stage or trash
// directory is left; after the second restart the agent converges on the
// spec, runs the new version, reports it in its status document and
// leaves no stage or trash directory either. With an atomic exchange the
// directory is the old or the new version at the moment of the kill too.
//
// The agent is built with the mmscrashtest tag, whose hook stops the
// installer at the step named by $MMS_CRASHTEST_STEP and says so on
// stderr, and swaps with two renames when $MMS_CRASHTEST_RENAMES is 1; a
// kill "during download" needs no hook: the archive server sends half the
// archive and stalls.
func TestAgentCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an mms binary; skipped in -short mode")
	}
	bin := buildCrashTestAgent(t)
	dir := t.TempDir()
	_, pub := newKeyPair(t, dir, "ops")
	priv := readPrivateKey(t, filepath.Join(dir, "ops.key"))
	repo := newStallingRepo(t)
	v1, v2, v3 := repo.publish(t, "1.0.0"), repo.publish(t, "2.0.0"), repo.publish(t, "3.0.0")
	versions := map[string]spec.Machine{"1.0.0": v1, "2.0.0": v2, "3.0.0": v3}

	// The state every upgrade and purge starts from: 2.0.0 installed, 1.0.0
	// kept as the previous version. One agent prepares it; each scenario
	// runs on a copy.
	prepared := filepath.Join(dir, "prepared")
	prep := startCrashAgent(t, bin, prepared, pub, "", false)
	putSpec(t, prep.js, priv, 1, v1)
	waitConverged(t, prep.js, 1, "1.0.0", v1)
	putSpec(t, prep.js, priv, 2, v2)
	waitConverged(t, prep.js, 2, "2.0.0", v2)
	prep.stop(t)

	tests := []struct {
		name    string
		from    string        // "" (an empty state) or "prepared"
		want    *spec.Machine // the crash run's spec entry; nil: an empty spec (purge)
		step    string        // where the crash hook stops the agent; "" kills it mid-download
		renames bool          // swap with two renames, not an exchange
		old     string        // the version live before the crash run ("" none)
	}{
		{name: "first install, during download", want: &v1},
		{name: "first install, after extract", want: &v1, step: "extract"},
		{name: "first install, after the rename", want: &v1, step: "rename1"},
		{name: "upgrade, during download", from: "prepared", want: &v3, old: "2.0.0"},
		{name: "upgrade, after extract", from: "prepared", want: &v3, step: "extract", old: "2.0.0"},
		{name: "upgrade, intent recorded", from: "prepared", want: &v3, step: "record", old: "2.0.0"},
		{name: "upgrade, after the exchange", from: "prepared", want: &v3, step: "rename1", old: "2.0.0"},
		{name: "upgrade, older previous in trash", from: "prepared", want: &v3, step: "rename2", old: "2.0.0"},
		{name: "upgrade, old version kept as previous", from: "prepared", want: &v3, step: "rename3", old: "2.0.0"},
		{name: "upgrade, deleting the retired tree", from: "prepared", want: &v3, step: "discard", old: "2.0.0"},
		{name: "upgrade by renames, old tree moved aside", from: "prepared", want: &v3, step: "rename1", renames: true, old: "2.0.0"},
		{name: "upgrade by renames, new tree in place", from: "prepared", want: &v3, step: "rename2", renames: true, old: "2.0.0"},
		{name: "upgrade by renames, older previous in trash", from: "prepared", want: &v3, step: "rename3", renames: true, old: "2.0.0"},
		{name: "upgrade by renames, old version kept as previous", from: "prepared", want: &v3, step: "rename4", renames: true, old: "2.0.0"},
		{name: "purge, live tree in trash", from: "prepared", step: "purge-rename1", old: "2.0.0"},
		{name: "purge, previous tree in trash", from: "prepared", step: "purge-rename2", old: "2.0.0"},
		{name: "purge, record removed", from: "prepared", step: "purge-record", old: "2.0.0"},
		{name: "purge, deleting the trees", from: "prepared", step: "discard", old: "2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := filepath.Join(t.TempDir(), "state")
			if tt.from != "" {
				copyDir(t, prepared, state)
			}
			live := filepath.Join(state, "machines", "web")
			newVersion, entries := "", []spec.Machine{}
			if tt.want != nil {
				newVersion, entries = versionOf(t, versions, *tt.want), []spec.Machine{*tt.want}
			}

			// The crash run: put the spec, wait for the agent to reach the
			// step (or the stalled download), kill it.
			var stalled <-chan struct{}
			if tt.step == "" {
				entries[0], stalled = repo.stalledCopy(*tt.want, t.Name())
			}
			a := startCrashAgent(t, bin, state, pub, tt.step, tt.renames)
			putSpec(t, a.js, priv, 3, entries...)
			if tt.step == "" {
				select {
				case <-stalled:
				case <-time.After(e2eTimeout):
					t.Fatal("the agent never started the download")
				}
				waitStage(t, filepath.Join(state, "machines"))
			} else {
				waitFor(t, a.stderr, crashTestPaused+tt.step+"\n")
			}
			a.kill(t)
			if tt.step == "" {
				repo.unstall(entries[0].Source)
			}
			if !tt.renames {
				assertOldOrNew(t, versions, live, tt.old, newVersion)
			}

			// A restart that stops once recovery is done: old or new, no
			// leftovers.
			r := startCrashAgent(t, bin, state, pub, "recovered", false)
			waitFor(t, r.stderr, crashTestPaused+"recovered\n")
			assertOldOrNew(t, versions, live, tt.old, newVersion)
			if l := leftovers(t, filepath.Join(state, "machines")); len(l) > 0 {
				t.Errorf("leftovers after recovery: %v", l)
			}
			r.kill(t)

			// The restart for good: the agent converges on the spec.
			b := startCrashAgent(t, bin, state, pub, "", false)
			if tt.want != nil {
				waitConverged(t, b.js, 3, newVersion, *tt.want)
			} else {
				statusDoc(t, b.js, crashIdentity, func(d *nodestatus.Document) error {
					if d.Applied == nil || d.Applied.Serial != 3 {
						return fmt.Errorf("status applied spec = %+v, want serial 3", d.Applied)
					}
					if m := findMachine(d, "web"); m != nil {
						return fmt.Errorf("purged machine still in the status: %+v", *m)
					}
					return nil
				})
			}
			waitNoLeftovers(t, filepath.Join(state, "machines"))
			assertOldOrNew(t, versions, live, newVersion, newVersion)
			b.stop(t)
		})
	}
}

// buildCrashTestAgent builds mms with the crash hook (-tags mmscrashtest).
func buildCrashTestAgent(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the agent: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mms")
	cmd := exec.CommandContext(t.Context(), goCmd, "build", "-tags", "mmscrashtest", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags mmscrashtest: %v\n%s", err, out)
	}
	return bin
}

// crashAgent is one `mms agent` process and a JetStream context on its
// embedded server.
type crashAgent struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan struct{}
	js     jetstream.JetStream
}

// startCrashAgent starts the agent on state, trusting the key in pub,
// stopping at step when it is not empty and swapping by renames when
// renames is set, and connects to its server.
func startCrashAgent(t *testing.T, bin, state, pub, step string, renames bool) *crashAgent {
	t.Helper()
	a := &crashAgent{stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(bin, "agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--allow-http", "--identity", crashIdentity, "--status-interval", "200ms")
	a.cmd.Env = append(os.Environ(), crashTestStep+"="+step)
	if renames {
		a.cmd.Env = append(a.cmd.Env, crashTestRenames+"=1")
	}
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() { a.kill(t) })
	agentURL(t, a.stderr) // the embedded server is up and its credentials written
	nc := loginOf(t, state).connect(t, nats.MaxReconnects(0))
	var err error
	if a.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return a
}

// kill ends the process with SIGKILL and waits for it.
func (a *crashAgent) kill(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Kill()
	<-a.done
}

// stop asks the agent to shut down and waits for it.
func (a *crashAgent) stop(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(e2eTimeout):
		t.Errorf("the agent did not stop within %v of SIGTERM; stderr:\n%s", e2eTimeout, a.stderr.String())
		a.kill(t)
	}
}

// putSpec signs a v2 spec of serial with entries and puts it.
func putSpec(t *testing.T, js jetstream.JetStream, priv ed25519.PrivateKey, serial uint64, entries ...spec.Machine) {
	t.Helper()
	if entries == nil {
		entries = []spec.Machine{}
	}
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: serial, IssuedAt: time.Now().UTC(), Machines: entries}, priv)
	if err != nil {
		t.Fatal(err)
	}
	var kv jetstream.KeyValue
	natstest.Eventually(t, e2eTimeout, func() error {
		kv, err = js.KeyValue(t.Context(), mmsmanager.DefaultBucket)
		return err
	})
	if _, err := kv.Put(t.Context(), mmsmanager.DefaultKey, env); err != nil {
		t.Fatalf("put spec %d: %v", serial, err)
	}
}

// waitConverged waits until the status document reports spec serial and
// web running version, installed from m.
func waitConverged(t *testing.T, js jetstream.JetStream, serial uint64, version string, m spec.Machine) {
	t.Helper()
	statusDoc(t, js, crashIdentity, func(d *nodestatus.Document) error {
		w := findMachine(d, "web")
		switch {
		case d.Applied == nil || d.Applied.Serial != serial:
			return fmt.Errorf("status applied spec = %+v, want serial %d", d.Applied, serial)
		case w == nil:
			return fmt.Errorf("web not in the status: %+v", d.Machines)
		case w.Version != version || w.State != "ready" || w.Checksum != m.Checksum || w.LastError != "":
			return fmt.Errorf("status of web = %+v, want %s ready from %s without error", *w, version, m.Checksum)
		}
		return nil
	})
}

// assertOldOrNew fails unless live is exactly version old or version new
// ("" for no tree): a directory that verifies against that version's
// SHA256SUMS, with that version's machine.yaml.
func assertOldOrNew(t *testing.T, versions map[string]spec.Machine, live, old, new string) {
	t.Helper()
	if _, err := os.Lstat(live); errors.Is(err, fs.ErrNotExist) {
		if old != "" && new != "" {
			t.Fatalf("%s is missing, want version %s or %s", live, old, new)
		}
		return
	}
	for _, v := range []string{old, new} {
		if v == "" {
			continue
		}
		if packer.VerifyTree(t.Context(), live, versions[v].VerifyChecksum) == nil &&
			readFile(t, filepath.Join(live, packer.MachineFile)) == runnableMachineYAML("web", v) {
			return
		}
	}
	t.Fatalf("%s is neither version %q nor %q", live, old, new)
}

// waitStage waits until the machines directory holds a stage directory
// (the download has started writing).
func waitStage(t *testing.T, machines string) {
	t.Helper()
	natstest.Eventually(t, e2eTimeout, func() error {
		if len(leftovers(t, machines)) == 0 {
			return errors.New("no stage directory yet")
		}
		return nil
	})
}

// waitNoLeftovers waits until the machines directory holds no stage or
// trash directory.
func waitNoLeftovers(t *testing.T, machines string) {
	t.Helper()
	natstest.Eventually(t, e2eTimeout, func() error {
		if l := leftovers(t, machines); len(l) > 0 {
			return fmt.Errorf("leftovers in %s: %v", machines, l)
		}
		return nil
	})
}

// leftovers lists the installer's stage and trash directories in machines.
func leftovers(t *testing.T, machines string) []string {
	t.Helper()
	entries, err := os.ReadDir(machines)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".stage-") || strings.HasPrefix(e.Name(), ".trash-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// versionOf returns the version of versions that m is.
func versionOf(t *testing.T, versions map[string]spec.Machine, m spec.Machine) string {
	t.Helper()
	for v, e := range versions {
		if e.Checksum == m.Checksum {
			return v
		}
	}
	t.Fatalf("no version has checksum %s", m.Checksum)
	return ""
}

// readPrivateKey reads a key file `mms keys --out` wrote.
func readPrivateKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	priv, err := packer.ParsePrivateKey(strings.TrimSpace(readFile(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// copyDir copies the tree from to the new directory to, modes included.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(dst, info.Mode().Perm())
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, data, info.Mode().Perm())
		}
		return fmt.Errorf("%s: unexpected file type %v", p, d.Type())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// stallingRepo serves versions of machine web; a stalled archive is sent
// half way, then the response waits until it is unstalled or the client
// goes away.
type stallingRepo struct {
	srv *httptest.Server

	mu      sync.Mutex
	files   map[string][]byte
	stalled map[string]chan struct{} // closed to unstall
	started map[string]chan struct{} // closed once half was sent
}

func newStallingRepo(t *testing.T) *stallingRepo {
	t.Helper()
	r := &stallingRepo{files: map[string][]byte{}, stalled: map[string]chan struct{}{}, started: map[string]chan struct{}{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *stallingRepo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	data, ok := r.files[req.URL.Path]
	release, stall := r.stalled[req.URL.Path]
	started := r.started[req.URL.Path]
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	if !stall {
		_, _ = w.Write(data)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	_, _ = w.Write(data[:len(data)/2])
	w.(http.Flusher).Flush()
	r.mu.Lock()
	select {
	case <-started:
	default:
		close(started)
	}
	r.mu.Unlock()
	select {
	case <-release:
	case <-req.Context().Done():
	}
}

// publish builds version of machine web: its machine.yaml, check.sh and
// incompressible data files, so half the archive holds whole files.
func (r *stallingRepo) publish(t *testing.T, version string) spec.Machine {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "web")
	files := map[string]string{
		"machine.yaml": runnableMachineYAML("web", version),
		"check.sh":     "#!/bin/sh\nexit 0\n",
	}
	for i := range 8 {
		data := make([]byte, 32<<10)
		_, _ = rand.Read(data)
		files[fmt.Sprintf("data/%d.bin", i)] = string(data)
	}
	for file, content := range files {
		p := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	info, err := packer.CreateArchive(t.Context(), dir, "web", &buf)
	if err != nil {
		t.Fatal(err)
	}
	path := "/web-" + version + ".tar.gz"
	r.mu.Lock()
	r.files[path] = buf.Bytes()
	r.mu.Unlock()
	return spec.Machine{Name: "web", Source: r.srv.URL + path, Checksum: info.Checksum, VerifyChecksum: info.VerifyChecksum, Size: info.Size}
}

// stalledCopy serves the archive m pins at a URL of its own, named for
// tag, where it stalls half way. It returns the entry for that URL and a
// channel closed once a download of it has received the first half.
func (r *stallingRepo) stalledCopy(m spec.Machine, tag string) (spec.Machine, <-chan struct{}) {
	safe := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return c
		}
		return '-'
	}, tag)
	path := "/stalled/" + safe + strings.TrimPrefix(m.Source, r.srv.URL)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[path] = r.files[strings.TrimPrefix(m.Source, r.srv.URL)]
	r.stalled[path] = make(chan struct{})
	r.started[path] = make(chan struct{})
	m.Source = r.srv.URL + path
	return m, r.started[path]
}

// unstall serves the archive at source whole again.
func (r *stallingRepo) unstall(source string) {
	path := strings.TrimPrefix(source, r.srv.URL)
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.stalled[path])
	delete(r.stalled, path)
}
