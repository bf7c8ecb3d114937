package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// e2eTimeout bounds every wait of the end-to-end tests: generous, since
// they poll for outcomes and never for time.
const e2eTimeout = 30 * time.Second

// runnableMachineYAML is a machine that only reaches its "ready" state by
// running the check.sh shipped in its archive (an exec watcher), so a
// machine in "ready" was installed with its executable intact and runs.
func runnableMachineYAML(name, version string) string {
	return "name: " + name + "\nversion: " + version + `
initial_state: idle
transitions:
  - name: checked
    from: [idle]
    destination: ready
watchers:
  - name: check
    type: exec
    state_match: [idle]
    success_transition: checked
    interval: 1m
    properties:
      command: ./check.sh
`
}

// archiveRepo is an HTTP server of machine archives built with
// packer.CreateArchive, as an operator's artifact repository.
type archiveRepo struct {
	srv *httptest.Server

	mu    sync.Mutex
	files map[string][]byte
}

func newArchiveRepo(t testing.TB) *archiveRepo {
	t.Helper()
	r := &archiveRepo{files: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		data, ok := r.files[req.URL.Path]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// publish builds the archive of machine name at version (its machine.yaml
// and check.sh), serves it and returns the spec entry pinning it.
func (r *archiveRepo) publish(t testing.TB, name, version string) spec.Machine {
	t.Helper()
	return r.publishCheck(t, name, version, "exit 0")
}

// publishCheck is publish with check.sh running check: a check that fails
// keeps the machine in its initial state.
func (r *archiveRepo) publishCheck(t testing.TB, name, version, check string) spec.Machine {
	t.Helper()
	return r.publishFiles(t, name, version, map[string]string{
		"machine.yaml": runnableMachineYAML(name, version),
		"check.sh":     "#!/bin/sh\n" + check + "\n",
	})
}

// publishFiles builds the archive of machine name at version holding
// files (name → content, all executable), serves it and returns the spec
// entry pinning it.
func (r *archiveRepo) publishFiles(t testing.TB, name, version string, files map[string]string) spec.Machine {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, content := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	info, err := packer.CreateArchive(t.Context(), dir, name, &buf)
	if err != nil {
		t.Fatalf("CreateArchive(%s) = %v", dir, err)
	}
	path := "/" + name + "-" + version + ".tar.gz"
	r.mu.Lock()
	r.files[path] = buf.Bytes()
	r.mu.Unlock()
	return spec.Machine{Name: name, Source: r.srv.URL + path, Checksum: info.Checksum, VerifyChecksum: info.VerifyChecksum, Size: info.Size}
}

// writeMachines writes machines.json listing entries in dir.
func writeMachines(t testing.TB, dir string, entries ...spec.Machine) string {
	t.Helper()
	if entries == nil {
		entries = []spec.Machine{}
	}
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "machines.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// putSerial matches the serial in `mms put`'s report.
var putSerial = regexp.MustCompile(`v2 spec serial (\d+)`)

// packPut runs `mms pack machines.json packArgs… | mms put putArgs…` the
// way a shell pipes them, and returns the serial put reports.
func packPut(t *testing.T, packArgs, putArgs []string) uint64 {
	t.Helper()
	env := mmsOK(t, "", append([]string{"pack", "machines.json"}, packArgs...)...).stdout
	out := mmsOK(t, env, append([]string{"put"}, putArgs...)...).stdout
	m := putSerial.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("mms put stdout = %q, want a v2 serial", out)
	}
	serial, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return serial
}

// managerState is the part of the manager's machines watcher state event
// the tests read.
type managerState struct {
	Identity string                  `json:"identity"`
	Machine  string                  `json:"machine"`
	Serial   uint64                  `json:"serial"`
	Results  []manager.MachineResult `json:"results"`
	Error    string                  `json:"error"`
}

// decodeManagerState decodes a machines watcher state event.
func decodeManagerState(msg []byte) (managerState, error) {
	var ev struct {
		Data managerState `json:"data"`
	}
	if err := json.Unmarshal(msg, &ev); err != nil {
		return managerState{}, fmt.Errorf("decode machines state event %s: %w", msg, err)
	}
	return ev.Data, nil
}

// lastManagerState polls the events stream until the manager's last state
// event is for serial and ok accepts it.
func lastManagerState(t *testing.T, js jetstream.JetStream, serial uint64, ok func(managerState) error) managerState {
	t.Helper()
	var st managerState
	natstest.Eventually(t, e2eTimeout, func() error {
		events, err := js.Stream(t.Context(), agent.EventsStream)
		if err != nil {
			return err
		}
		msg, err := events.GetLastMsgForSubject(t.Context(), agent.WatcherStateSubject("machines"))
		if err != nil {
			return err
		}
		if st, err = decodeManagerState(msg.Data); err != nil {
			return err
		}
		if st.Serial != serial {
			return fmt.Errorf("last machines event is for serial %d, want %d", st.Serial, serial)
		}
		return ok(st)
	})
	return st
}

// resultFor returns an error unless results hold name with outcome.
func resultFor(results []manager.MachineResult, name string, outcome manager.EntryOutcome) error {
	for _, r := range results {
		if r.Name == name {
			if r.Outcome != outcome {
				return fmt.Errorf("result for %s = %+v, want outcome %s", name, r, outcome)
			}
			return nil
		}
	}
	return fmt.Errorf("no result for %s in %+v", name, results)
}

// findMachine returns the document's machine name, or nil.
func findMachine(doc *nodestatus.Document, name string) *nodestatus.Machine {
	for i := range doc.Machines {
		if doc.Machines[i].Name == name {
			return &doc.Machines[i]
		}
	}
	return nil
}

// statusJSON runs `mms status --json` with the connection flags conn and
// returns the document of identity.
func statusJSON(t *testing.T, conn []string, identity string) (*nodestatus.Document, error) {
	t.Helper()
	r := mms(t, "", append([]string{"status", "--json"}, conn...)...)
	if r.code != 0 {
		return nil, fmt.Errorf("mms status --json: exit %d: %s", r.code, r.stderr)
	}
	var docs []nodestatus.Document
	if err := json.Unmarshal([]byte(r.stdout), &docs); err != nil {
		return nil, fmt.Errorf("mms status --json printed %q: %w", r.stdout, err)
	}
	for i := range docs {
		if docs[i].Identity == identity {
			return &docs[i], nil
		}
	}
	return nil, fmt.Errorf("mms status --json has no document of %q: %s", identity, r.stdout)
}

// pollStatus polls `mms status --json` until ok accepts identity's document.
func pollStatus(t *testing.T, conn []string, identity string, ok func(*nodestatus.Document) error) *nodestatus.Document {
	t.Helper()
	var doc *nodestatus.Document
	natstest.Eventually(t, e2eTimeout, func() error {
		var err error
		if doc, err = statusJSON(t, conn, identity); err != nil {
			return err
		}
		return ok(doc)
	})
	return doc
}

// wantMachine returns an error unless doc runs machine name at version in
// state, installed from checksum with the manager's outcome.
func wantMachine(doc *nodestatus.Document, serial uint64, name, version, state, checksum string, outcome manager.EntryOutcome) error {
	if doc.AppliedSerial() != serial {
		return fmt.Errorf("status spec serial = %d, want %d", doc.AppliedSerial(), serial)
	}
	m := findMachine(doc, name)
	if m == nil {
		return fmt.Errorf("machine %s not in the status document: %+v", name, doc.Machines)
	}
	want := nodestatus.Machine{Name: name, Version: version, State: state, Path: m.Path, Checksum: checksum, LastOutcome: string(outcome)}
	if *m != want {
		return fmt.Errorf("status machine = %+v, want %+v", *m, want)
	}
	return nil
}

// statusCheck runs `mms status --check` and returns its exit code and
// stderr.
func statusCheck(t *testing.T, conn []string) (int, string) {
	t.Helper()
	r := mms(t, "", append([]string{"status", "--check"}, conn...)...)
	return r.code, r.stderr
}

// TestAgentConverges follows a user: an agent with the embedded server,
// a machines.json pointing at archives on an HTTP server, the banner's
// `mms pack … | mms put …` pipeline, then `mms status`. Each spec is
// followed to the installed directory, the running machine, the manager's
// event and the status document; --check reports a failed entry and
// clears once a good spec is in place; an empty spec purges the machine.
func TestAgentConverges(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the banner's command names machines.json and ops.key in the working directory
	_, pub := newKeyPair(t, dir, "ops")
	state := filepath.Join(dir, "state")
	const identity = "web1"
	_, errOut, stop := runUntil(t, "agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--allow-http", "--identity", identity, "--status-interval", "500ms")
	agentURL(t, errOut)
	repo := newArchiveRepo(t)
	put := []string{"--state-dir", state}
	sign := []string{"--key-file", "ops.key", "--allow-http"}

	nc := agentConn(t, state)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(state, "machines", "web")

	// 1.0.0: installed and running.
	v1 := repo.publish(t, "web", "1.0.0")
	writeMachines(t, dir, v1)
	serial := packPut(t, sign, put)
	lastManagerState(t, js, serial, func(st managerState) error {
		if st.Identity != identity || st.Machine != mmsmanager.MachineName {
			return fmt.Errorf("machines event from %s/%s, want %s/%s", st.Identity, st.Machine, identity, mmsmanager.MachineName)
		}
		return resultFor(st.Results, "web", manager.EntryInstalled)
	})
	if got := readFile(t, filepath.Join(installed, "machine.yaml")); got != runnableMachineYAML("web", "1.0.0") {
		t.Errorf("installed machine.yaml = %q, want the archive's", got)
	}
	doc := pollStatus(t, put, identity, func(d *nodestatus.Document) error {
		return wantMachine(d, serial, "web", "1.0.0", "ready", v1.Checksum, manager.EntryInstalled)
	})
	if m := findMachine(doc, "web"); m.Path != installed {
		t.Errorf("status path of web = %q, want %q", m.Path, installed)
	}
	if m := findMachine(doc, mmsmanager.MachineName); m == nil || !m.CompiledIn || m.State != "MANAGE" {
		t.Errorf("status of %s = %+v, want compiled in, in MANAGE", mmsmanager.MachineName, m)
	}
	if code, stderr := statusCheck(t, put); code != 0 {
		t.Errorf("mms status --check with web installed = exit %d (%s), want 0", code, stderr)
	}

	// 2.0.0: updated in place.
	v2 := repo.publish(t, "web", "2.0.0")
	writeMachines(t, dir, v2)
	serial = packPut(t, append(sign, "--serial", strconv.FormatUint(serial+1, 10)), put)
	lastManagerState(t, js, serial, func(st managerState) error { return resultFor(st.Results, "web", manager.EntryUpdated) })
	pollStatus(t, put, identity, func(d *nodestatus.Document) error {
		return wantMachine(d, serial, "web", "2.0.0", "ready", v2.Checksum, manager.EntryUpdated)
	})

	// The same machines under a new serial change nothing, but the node
	// reports the serial, so it is not flagged behind.
	serial = packPut(t, append(sign, "--serial", strconv.FormatUint(serial+1, 10)), put)
	lastManagerState(t, js, serial, func(st managerState) error { return resultFor(st.Results, "web", manager.EntryUnchanged) })
	pollStatus(t, put, identity, func(d *nodestatus.Document) error {
		return wantMachine(d, serial, "web", "2.0.0", "ready", v2.Checksum, manager.EntryUnchanged)
	})
	if code, stderr := statusCheck(t, put); code != 0 {
		t.Errorf("mms status --check after an unchanged spec = exit %d (%s), want 0", code, stderr)
	}

	// An entry whose archive does not match its checksum fails; 2.0.0
	// keeps running and --check exits 2 naming the node.
	bad := repo.publish(t, "web", "3.0.0")
	bad.Checksum = v1.Checksum
	writeMachines(t, dir, bad)
	serial = packPut(t, append(sign, "--serial", strconv.FormatUint(serial+1, 10)), put)
	lastManagerState(t, js, serial, func(st managerState) error { return resultFor(st.Results, "web", manager.EntryFailed) })
	pollStatus(t, put, identity, func(d *nodestatus.Document) error {
		m := findMachine(d, "web")
		if d.AppliedSerial() != serial || m == nil || m.Version != "2.0.0" || m.State != "ready" || m.LastOutcome != string(manager.EntryFailed) || m.LastError == "" {
			return fmt.Errorf("status = serial %d, web %+v; want serial %d, 2.0.0 still ready, failed with an error", d.AppliedSerial(), m, serial)
		}
		return nil
	})
	if code, stderr := statusCheck(t, put); code != 2 || !strings.Contains(stderr, identity+": failed: web failed: install: ") {
		t.Errorf("mms status --check with a failed entry = exit %d, stderr %q; want 2 naming %s, the entry and why", code, stderr, identity)
	}

	// An empty spec purges the machine the manager installed.
	writeMachines(t, dir)
	serial = packPut(t, append(sign, "--serial", strconv.FormatUint(serial+1, 10)), put)
	lastManagerState(t, js, serial, func(st managerState) error { return resultFor(st.Results, "web", manager.EntryPurged) })
	pollStatus(t, put, identity, func(d *nodestatus.Document) error {
		if d.AppliedSerial() != serial {
			return fmt.Errorf("status spec serial = %d, want %d", d.AppliedSerial(), serial)
		}
		if m := findMachine(d, "web"); m != nil {
			return fmt.Errorf("purged machine still in the status: %+v", *m)
		}
		return nil
	})
	if _, err := os.Stat(installed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s after the purge = %v, want it gone", installed, err)
	}
	if code, stderr := statusCheck(t, put); code != 0 {
		t.Errorf("mms status --check after the purge = exit %d (%s), want 0", code, stderr)
	}

	nc.Close()
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
	assertLogOnce(t, errOut.String(), map[string]int{
		`msg="machine installed"`: 1, `msg="machine updated"`: 1, `msg="machine purged"`: 1,
	})
}

// assertLogOnce checks the agent's text log: no line repeats a key (a
// managed machine is "managed", never a second "machine"), and each
// message in want appears that many times (an install is logged once).
func assertLogOnce(t *testing.T, log string, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for line := range strings.Lines(log) {
		if !strings.HasPrefix(line, "time=") {
			continue // the banner
		}
		keys := map[string]bool{}
		for _, k := range logfmtKeys(line) {
			if keys[k] {
				t.Errorf("log line repeats the key %q: %s", k, line)
			}
			keys[k] = true
		}
		for msg := range want {
			if strings.Contains(line, " "+msg+" ") {
				got[msg]++
			}
		}
	}
	for msg, n := range want {
		if got[msg] != n {
			t.Errorf("%s logged %d times, want %d:\n%s", msg, got[msg], n, log)
		}
	}
}

// logfmtKeys returns the keys of one slog text line, skipping quoted
// values (which may hold "k=v" themselves).
func logfmtKeys(line string) []string {
	var keys []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		keys = append(keys, k)
		if strings.HasPrefix(rest, `"`) {
			if v, err := strconv.QuotedPrefix(rest); err == nil {
				line = rest[len(v):]
				continue
			}
		}
		_, line, _ = strings.Cut(rest, " ")
	}
	return keys
}
