package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/watchers"
)

// natsEvents subscribes to every machine event on nc and records each one
// decoded with the CloudEvents SDK.
func natsEvents(t *testing.T, nc *nats.Conn) *recorder {
	t.Helper()
	rec := &recorder{}
	sub, err := nc.Subscribe(EventsSubjects, func(msg *nats.Msg) {
		ev := event.New()
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Errorf("decode CloudEvent on %s: %v", msg.Subject, err)
			return
		}
		_ = rec.Publish(context.Background(), msg.Subject, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return rec
}

// hostFixture is a Host on temp directories publishing to a real NATS
// server.
type hostFixture struct {
	h           *Host
	machines    string
	data        string
	events      *recorder
	stop        func()
	verifyLeaks func()
}

func startHost(t *testing.T, cfg HostConfig) *hostFixture {
	t.Helper()
	srv := natstest.RunJetStream(t)
	pubConn := natstest.Connect(t, srv)
	subConn := natstest.Connect(t, srv)
	events := natsEvents(t, subConn)
	leakOpt := goleak.IgnoreCurrent()

	root := t.TempDir()
	f := &hostFixture{machines: filepath.Join(root, "machines"), data: filepath.Join(root, "data"), events: events}
	cfg.MachinesDir, cfg.DataDir = f.machines, f.data
	cfg.Identity = "node1.example"
	cfg.Publisher = NATSPublisher{Conn: pubConn}
	cfg.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	if cfg.ScanInterval == 0 {
		cfg.ScanInterval = time.Hour // only file-system notifications
	}
	if err := os.MkdirAll(f.machines, 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(cfg)
	if err != nil {
		t.Fatalf("NewHost() = %v", err)
	}
	f.h = h
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Host.Run() = %v", err)
		}
	}
	f.verifyLeaks = func() {
		f.stop()
		goleak.VerifyNone(t, leakOpt)
	}
	t.Cleanup(f.stop)
	return f
}

// writeMachine installs name/machine.yaml the way an installer does: a new
// directory renamed into place, the old one moved aside and removed.
func (f *hostFixture) writeMachine(t *testing.T, name, yaml string) {
	t.Helper()
	stage, err := os.MkdirTemp(f.machines, ".stage-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, machine.File), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(f.machines, name)
	old := dst + ".old-temp"
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.Rename(stage, dst); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(old); err != nil {
		t.Fatal(err)
	}
}

// state returns the status of the named machine, if running.
func (f *hostFixture) state(name string) (MachineStatus, bool) {
	for _, s := range f.h.States() {
		if s.Name == name {
			return s, true
		}
	}
	return MachineStatus{}, false
}

func (f *hostFixture) hostEvents(t *testing.T, name, outcome string) []map[string]any {
	return f.events.find(t, HostEventType, map[string]any{"machine": name, "outcome": outcome})
}

func probeMachine(name, version, key string, extra string) string {
	return machineYAML(name, version, fmt.Sprintf(`
  - name: w
    type: probe
    properties: {key: %s%s}`, key, extra))
}

func TestHostHotReload(t *testing.T) {
	ctl, key := newProbe(t)
	f := startHost(t, HostConfig{})
	f.writeMachine(t, "alpha", probeMachine("alpha", "1.0.0", key, ""))

	eventually(t, "alpha 1.0.0 running", func() bool { s, ok := f.state("alpha"); return ok && s.Version == "1.0.0" })
	eventually(t, "loaded host event", func() bool { return len(f.hostEvents(t, "alpha", HostLoaded)) == 1 })
	for _, e := range f.events.all() {
		if e.ev.Type() == HostEventType && e.subject != "choria.machine.watcher.host.state" {
			t.Errorf("host event on subject %q, want choria.machine.watcher.host.state", e.subject)
		}
	}
	st, _ := f.state("alpha")
	if st.Path != filepath.Join(f.machines, "alpha") || st.ID != watchers.InstanceID("node1.example", "alpha") || st.State != "idle" {
		t.Errorf("States()[alpha] = %+v, want path, stable id and state idle", st)
	}

	// A transition goes out on NATS as a Choria transition CloudEvent.
	if err := f.h.Transition(t.Context(), "alpha", "go"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "transition event", func() bool { return len(f.events.find(t, TransitionEventType, nil)) == 1 })
	first := f.events.all()
	var tr recorded
	for _, e := range first {
		if e.ev.Type() == TransitionEventType {
			tr = e
		}
	}
	if tr.subject != TransitionSubject || tr.ev.Source() != EventSource || tr.ev.Subject() != "node1.example" || tr.ev.DataContentType() != event.ApplicationJSON {
		t.Errorf("transition event subject %q, source %q, CE subject %q, content type %q; want %s, %s, node1.example, application/json",
			tr.subject, tr.ev.Source(), tr.ev.Subject(), tr.ev.DataContentType(), TransitionSubject, EventSource)
	}
	if err := tr.ev.Validate(); err != nil {
		t.Errorf("transition event does not validate as a CloudEvent: %v", err)
	}
	firstID := data(t, tr.ev)["id"]

	// Data written by version 1 survives the reload.
	ctl.mu.Lock()
	ds := ctl.deps.Data
	ctl.mu.Unlock()
	if err := ds.Put("seen", "v1"); err != nil {
		t.Fatal(err)
	}

	f.writeMachine(t, "alpha", probeMachine("alpha", "2.0.0", key, ""))
	eventually(t, "alpha 2.0.0 running", func() bool { s, ok := f.state("alpha"); return ok && s.Version == "2.0.0" })
	if n := ctl.closed.Load(); n != 1 {
		t.Errorf("Close calls after the reload = %d, want 1 (version 1 stopped)", n)
	}
	eventually(t, "reloaded host event", func() bool { return len(f.hostEvents(t, "alpha", HostLoaded)) == 2 })
	loads := f.hostEvents(t, "alpha", HostLoaded)
	if _, ok := loads[0]["previous_version"]; ok || loads[1]["version"] != "2.0.0" || loads[1]["previous_version"] != "1.0.0" {
		t.Errorf("loaded events = %v, want the first without previous_version and the reload 1.0.0 -> 2.0.0", loads)
	}
	ctl.mu.Lock()
	ds2 := ctl.deps.Data
	ctl.mu.Unlock()
	if v, _ := ds2.Get("seen"); v != "v1" {
		t.Errorf("data after reload Get(seen) = %v, want v1", v)
	}
	if _, err := os.Stat(filepath.Join(f.data, "alpha", DataFile)); err != nil {
		t.Errorf("data file not under DataDir: %v", err)
	}
	if err := f.h.Transition(t.Context(), "alpha", "go"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "second transition event", func() bool { return len(f.events.find(t, TransitionEventType, nil)) == 2 })
	for _, d := range f.events.find(t, TransitionEventType, nil) {
		if d["id"] != firstID || d["version"] == nil {
			t.Errorf("transition data id = %v, want the stable %v across reloads", d["id"], firstID)
		}
	}

	// An invalid update is rejected and the running version stays.
	f.writeMachine(t, "alpha", probeMachine("alpha", "3.0.0", key, ", pathh: x"))
	eventually(t, "load_failed host event", func() bool { return len(f.hostEvents(t, "alpha", HostLoadFailed)) == 1 })
	fail := f.hostEvents(t, "alpha", HostLoadFailed)[0]
	if e, _ := fail["error"].(string); !strings.Contains(e, `watcher "w" (probe): properties: unknown field "pathh"`) {
		t.Errorf("load_failed error = %q, want the unknown property named", e)
	}
	if fail["version"] != "3.0.0" || fail["path"] != filepath.Join(f.machines, "alpha") || fail["type"] != HostWatcherType {
		t.Errorf("load_failed event = %v, want version 3.0.0, path and type host", fail)
	}
	if s, ok := f.state("alpha"); !ok || s.Version != "2.0.0" || s.State != "busy" {
		t.Errorf("after a rejected update States()[alpha] = %+v, %v, want 2.0.0 still running in busy", s, ok)
	}

	// Removal stops the machine and waits for its watchers.
	if err := os.RemoveAll(filepath.Join(f.machines, "alpha")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alpha removed", func() bool { _, ok := f.state("alpha"); return !ok })
	eventually(t, "unloaded host event", func() bool { return len(f.hostEvents(t, "alpha", HostUnloaded)) == 1 })
	if n := ctl.closed.Load(); n != 2 {
		t.Errorf("Close calls after removal = %d, want 2", n)
	}
	f.verifyLeaks()
}

func TestHostReloadsOnDirectorySwapWithSameYAML(t *testing.T) {
	ctl, key := newProbe(t)
	f := startHost(t, HostConfig{})
	yaml := probeMachine("beta", "1", key, "")
	f.writeMachine(t, "beta", yaml)
	eventually(t, "beta loaded", func() bool { return len(f.hostEvents(t, "beta", HostLoaded)) == 1 })
	f.writeMachine(t, "beta", yaml) // same machine.yaml, new directory (scripts changed)
	eventually(t, "beta reloaded", func() bool { return len(f.hostEvents(t, "beta", HostLoaded)) == 2 })
	if n := ctl.closed.Load(); n != 1 {
		t.Errorf("Close calls = %d, want 1", n)
	}
	f.verifyLeaks()
}

func TestHostPeriodicScanFallback(t *testing.T) {
	_, key := newProbe(t)
	f := startHost(t, HostConfig{ScanInterval: 20 * time.Millisecond})
	f.writeMachine(t, "gamma", probeMachine("gamma", "1", key, ""))
	eventually(t, "gamma running", func() bool { _, ok := f.state("gamma"); return ok })
	// A failed version is reported once, not on every scan.
	f.writeMachine(t, "gamma", probeMachine("gamma", "2", key, ", reject: true"))
	eventually(t, "load_failed", func() bool { return len(f.hostEvents(t, "gamma", HostLoadFailed)) == 1 })
	start := time.Now()
	eventually(t, "several scans", func() bool { return time.Since(start) > 200*time.Millisecond })
	if n := len(f.hostEvents(t, "gamma", HostLoadFailed)); n != 1 {
		t.Errorf("load_failed events after several scans = %d, want 1", n)
	}
	f.verifyLeaks()
}

// TestHostWithoutNotifications: with NoNotify the host holds no inotify
// instance (a process running hundreds of hosts would exhaust the 128 a
// user has) and still finds a machine put there by hand, at its scan.
func TestHostWithoutNotifications(t *testing.T) {
	_, key := newProbe(t)
	before := inotifyInstances(t)
	f := startHost(t, HostConfig{ScanInterval: 20 * time.Millisecond, NoNotify: true})
	f.writeMachine(t, "delta", probeMachine("delta", "1", key, ""))
	eventually(t, "delta running", func() bool { _, ok := f.state("delta"); return ok })
	if after := inotifyInstances(t); after != before {
		t.Errorf("inotify instances of this process: %d with the host running, %d before; want none taken", after, before)
	}
	f.verifyLeaks()
}

// inotifyInstances counts this process's inotify file descriptors.
func inotifyInstances(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list this process's descriptors: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

func TestHostSkipsNonMachines(t *testing.T) {
	_, key := newProbe(t)
	f := startHost(t, HostConfig{})
	for _, name := range []string{"tmp", ".hidden", "x-temp"} {
		dir := filepath.Join(f.machines, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, machine.File), []byte(probeMachine(name, "1", key, "")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.machines, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.writeMachine(t, "wrongname", probeMachine("other", "1", key, ""))
	f.writeMachine(t, "good", probeMachine("good", "1", key, ""))
	eventually(t, "good running", func() bool { _, ok := f.state("good"); return ok })
	eventually(t, "wrongname rejected", func() bool { return len(f.hostEvents(t, "wrongname", HostLoadFailed)) == 1 })
	if e, _ := f.hostEvents(t, "wrongname", HostLoadFailed)[0]["error"].(string); !strings.Contains(e, `name "other" does not match its directory "wrongname"`) {
		t.Errorf("load_failed error = %q, want the name mismatch", e)
	}
	var names []string
	for _, s := range f.h.States() {
		names = append(names, s.Name)
	}
	if len(names) != 1 || names[0] != "good" {
		t.Errorf("running machines = %v, want only good", names)
	}
	f.verifyLeaks()
}

func TestHostLoadAndUnloadMachine(t *testing.T) {
	ctl, key := newProbe(t)
	f := startHost(t, HostConfig{})
	ctx := t.Context()

	// Written without a rename into place, then loaded explicitly.
	dir := filepath.Join(f.machines, "delta")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, machine.File), []byte(probeMachine("delta", "1", key, ", reject: true")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.h.LoadMachine(ctx, "delta", nil); err == nil || !strings.Contains(err.Error(), "rejected on request") {
		t.Errorf("LoadMachine(invalid) = %v, want the validation error", err)
	}
	if err := os.WriteFile(filepath.Join(dir, machine.File), []byte(probeMachine("delta", "2", key, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.h.LoadMachine(ctx, "delta", nil); err != nil {
		t.Fatalf("LoadMachine(valid) = %v", err)
	}
	if s, ok := f.state("delta"); !ok || s.Version != "2" {
		t.Errorf("after LoadMachine States()[delta] = %+v, %v, want version 2 running", s, ok)
	}
	if err := f.h.LoadMachine(ctx, "delta", nil); err != nil {
		t.Errorf("LoadMachine(unchanged) = %v, want nil", err)
	}
	if n := ctl.closed.Load(); n != 0 {
		t.Errorf("Close calls after an unchanged LoadMachine = %d, want 0 (no restart)", n)
	}
	for _, bad := range []string{"../etc", "", "a/b"} {
		if err := f.h.LoadMachine(ctx, bad, nil); err == nil {
			t.Errorf("LoadMachine(%q) = nil, want a name error", bad)
		}
	}
	if err := f.h.LoadMachine(ctx, "missing", nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadMachine(missing) = %v, want ErrNotExist", err)
	}

	if err := f.h.UnloadMachine(ctx, "delta"); err != nil {
		t.Fatalf("UnloadMachine() = %v", err)
	}
	if _, ok := f.state("delta"); ok {
		t.Error("delta still running after UnloadMachine")
	}
	if err := f.h.UnloadMachine(ctx, "delta"); err != nil {
		t.Errorf("UnloadMachine(not running) = %v, want nil", err)
	}
	if err := f.h.Transition(ctx, "delta", "go"); !errors.Is(err, ErrUnknownMachine) {
		t.Errorf("Transition(unloaded) = %v, want ErrUnknownMachine", err)
	}
	f.verifyLeaks()
	if err := f.h.LoadMachine(ctx, "delta", nil); !errors.Is(err, ErrHostStopped) {
		t.Errorf("LoadMachine after Run returned = %v, want ErrHostStopped", err)
	}
}

func TestHostCompiledInMachine(t *testing.T) {
	ctl, key := newProbe(t)
	def := machine.MustParse([]byte(probeMachine("builtin", "1", key, "")))
	f := startHost(t, HostConfig{Machines: []*machine.Definition{def}})
	eventually(t, "builtin running", func() bool { _, ok := f.state("builtin"); return ok })
	st, _ := f.state("builtin")
	if !st.CompiledIn || st.Path != filepath.Join(f.data, "builtin") {
		t.Errorf("States()[builtin] = %+v, want compiled in with its directory under DataDir", st)
	}
	ctl.mu.Lock()
	dir := ctl.deps.Dir
	ctl.mu.Unlock()
	if dir != filepath.Join(f.data, "builtin") {
		t.Errorf("Deps.Dir = %q, want %q", dir, filepath.Join(f.data, "builtin"))
	}
	// A directory machine cannot take its name, and scans never remove it.
	f.writeMachine(t, "builtin", probeMachine("builtin", "9", key, ""))
	eventually(t, "conflict reported", func() bool { return len(f.hostEvents(t, "builtin", HostLoadFailed)) == 1 })
	if err := os.RemoveAll(filepath.Join(f.machines, "builtin")); err != nil {
		t.Fatal(err)
	}
	if err := f.h.LoadMachine(t.Context(), "other", nil); err == nil { // forces a round trip through the loop
		t.Error("LoadMachine(other) = nil, want not found")
	}
	if s, ok := f.state("builtin"); !ok || s.Version != "1" {
		t.Errorf("compiled-in machine after a conflicting directory came and went = %+v, %v, want version 1 running", s, ok)
	}
	if err := f.h.UnloadMachine(t.Context(), "builtin"); !errors.Is(err, ErrCompiledIn) {
		t.Errorf("UnloadMachine(compiled-in) = %v, want ErrCompiledIn", err)
	}
	f.verifyLeaks()
}

func TestHostRunsOnce(t *testing.T) {
	f := startHost(t, HostConfig{})
	eventually(t, "host running", func() bool { return f.h.running.Load() })
	if err := f.h.Run(t.Context()); !errors.Is(err, ErrHostRunning) {
		t.Errorf("second Run() = %v, want ErrHostRunning", err)
	}
}

func TestNewHostRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := &machine.Definition{Name: "x"}
	tests := []struct {
		name string
		cfg  HostConfig
		want string
	}{
		{"no machines dir", HostConfig{DataDir: dir}, "MachinesDir is required"},
		{"no data dir", HostConfig{MachinesDir: dir}, "DataDir is required"},
		{"invalid compiled-in", HostConfig{MachinesDir: dir, DataDir: dir, Machines: []*machine.Definition{bad}}, "version is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHost(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHost() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// TestHostLoadUsesHandedDefinition checks the installer's hand-off: a
// definition parsed from the bytes on disk is run as handed (the file is not
// parsed again), and one parsed from other bytes is ignored. It drives the
// host's load step directly, so no scan races it.
// newTestLoop returns a Host on directories under root and its host loop,
// driven by the test itself (no Run).
func newTestLoop(t *testing.T, root string) (*Host, *hostLoop) {
	t.Helper()
	h, err := NewHost(HostConfig{MachinesDir: filepath.Join(root, "machines"), DataDir: filepath.Join(root, "data"), Identity: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	l := newHostLoop(h)
	t.Cleanup(l.stopAll)
	return h, l
}

// runningVersion returns the version of name h runs, "" when none.
func runningVersion(h *Host, name string) string {
	for _, s := range h.States() {
		if s.Name == name {
			return s.Version
		}
	}
	return ""
}

func TestHostLoadUsesHandedDefinition(t *testing.T) {
	_, key := newProbe(t)
	root := t.TempDir()
	h, l := newTestLoop(t, root)
	dir := filepath.Join(root, "machines", "echo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	onDisk := []byte(probeMachine("echo", "1", key, ""))
	if err := os.WriteFile(filepath.Join(dir, machine.File), onDisk, 0o644); err != nil {
		t.Fatal(err)
	}
	version := func() string { return runningVersion(h, "echo") }

	stale, err := machine.Parse([]byte(probeMachine("echo", "0", key, "")))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.load(t.Context(), "echo", true, stale); err != nil {
		t.Fatalf("load(other bytes' definition) = %v", err)
	}
	if v := version(); v != "1" {
		t.Fatalf("after a definition of other bytes the running version = %q, want the file's 1", v)
	}
	l.stopAll()

	handed, err := machine.Parse(onDisk)
	if err != nil {
		t.Fatal(err)
	}
	handed.Version = "handed" // only visible if the host runs what it was handed
	if err := l.load(t.Context(), "echo", true, handed); err != nil {
		t.Fatalf("load(handed definition) = %v", err)
	}
	if v := version(); v != "handed" {
		t.Errorf("after handing the file's definition the running version = %q, want the handed one (no second parse)", v)
	}
}

// recordingSink is a watchers.MetricsSink that remembers whose it is.
type recordingSink struct{ machine, watcher string }

func (recordingSink) Set([]watchers.Sample) {}

// TestHostHandsWatchersTheirMetricsSink: HostConfig.Metrics reaches each
// watcher as Deps.Metrics, named for its machine and watcher.
func TestHostHandsWatchersTheirMetricsSink(t *testing.T) {
	ctl, key := newProbe(t)
	f := startHost(t, HostConfig{Metrics: func(machine, watcher string) watchers.MetricsSink {
		return recordingSink{machine, watcher}
	}})
	f.writeMachine(t, "gamma", probeMachine("gamma", "1.0.0", key, ""))
	eventually(t, "gamma provisioned", func() bool {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		return ctl.deps.Metrics != nil
	})
	ctl.mu.Lock()
	got := ctl.deps.Metrics
	ctl.mu.Unlock()
	if got != watchers.MetricsSink(recordingSink{"gamma", "w"}) {
		t.Errorf("Deps.Metrics = %#v, want gamma's w sink", got)
	}
}

// TestHostMachineState: the host tells a health gate the states a machine
// went through since it started, and when.
func TestHostMachineState(t *testing.T) {
	_, key := newProbe(t)
	f := startHost(t, HostConfig{})
	if _, ok := f.h.MachineState("delta"); ok {
		t.Fatal("MachineState of a machine that does not run reports one")
	}
	f.writeMachine(t, "delta", probeMachine("delta", "1.0.0", key, ""))
	eventually(t, "delta started", func() bool { st, ok := f.h.MachineState("delta"); return ok && !st.Started.IsZero() })
	if err := f.h.Transition(t.Context(), "delta", "go"); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Transition(t.Context(), "delta", "back"); err != nil {
		t.Fatal(err)
	}
	st, ok := f.h.MachineState("delta")
	if !ok || st.Version != "1.0.0" || st.State != "idle" || st.Started.IsZero() {
		t.Fatalf("MachineState(delta) = %+v, %v; want 1.0.0 idle, started", st, ok)
	}
	idle, busy := st.Entered["idle"], st.Entered["busy"]
	if !idle.Equal(st.Started) || busy.IsZero() || busy.Before(idle) {
		t.Errorf("Entered = %v, want idle at the start (%v), then busy (first entry kept)", st.Entered, st.Started)
	}
}

// TestHostRescanReadsOnlyChanged: a rescan reads a machine.yaml again only
// when the directory or the file changed (inode, size, modification
// time), so an idle node with a hundred machines does not read and hash a
// hundred files every ten seconds; a changed one is read and reloaded.
func TestHostRescanReadsOnlyChanged(t *testing.T) {
	_, key := newProbe(t)
	root := t.TempDir()
	h, l := newTestLoop(t, root)
	reads := 0
	l.read = func(dir string) ([]byte, fingerprint, error) { reads++; return readMachineDir(dir) }
	dir := filepath.Join(root, "machines", "echo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(version string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, machine.File), []byte(probeMachine("echo", version, key, "")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version := func() string { return runningVersion(h, "echo") }
	write("1")
	for range 3 {
		if err := l.load(t.Context(), "echo", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 1 || version() != "1" {
		t.Errorf("three scans of an unchanged machine: %d reads, version %q; want 1 read, version 1", reads, version())
	}
	write("22") // another size: read and reloaded
	if err := l.load(t.Context(), "echo", false, nil); err != nil {
		t.Fatal(err)
	}
	if reads != 2 || version() != "22" {
		t.Errorf("a scan after a change: %d reads, version %q; want 2 reads, version 22", reads, version())
	}
	if err := l.load(t.Context(), "echo", true, nil); err != nil {
		t.Fatal(err)
	}
	if reads != 3 {
		t.Errorf("an explicit load read %d times in all, want 3: it always reads", reads)
	}
}
