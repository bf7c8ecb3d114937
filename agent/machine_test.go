package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/watchers"
)

// testMachine builds the machine described by yaml with a recorder and a
// data store in a temp dir.
func testMachine(t *testing.T, yaml string) (*Machine, *recorder) {
	t.Helper()
	def, err := machine.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("machine.Parse() error = %v", err)
	}
	store, err := OpenDataStore(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	m, err := NewMachine(def, MachineConfig{
		Dir: t.TempDir(), Identity: "node1", Publisher: rec, Data: store,
		Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("NewMachine() error = %v", err)
	}
	return m, rec
}

// runMachine runs m until the returned stop is called (or the test ends);
// stop waits for Run to return.
func runMachine(t *testing.T, m *Machine) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Machine.Run() = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	natstest.Eventually(t, 5*time.Second, func() error {
		if f() {
			return nil
		}
		return errors.New(what)
	})
}

func TestMachineSuccessFiresTransitionAndPublishes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctl, key := newProbe(t)
	ctl.push(step{res: watchers.Result{Outcome: watchers.Success, State: map[string]any{"detail": "ok", "machine": "spoofed"}}})
	m, rec := testMachine(t, machineYAML("m1", "1.2.3", fmt.Sprintf(`
  - name: w
    type: probe
    state_match: [idle]
    success_transition: go
    properties: {key: %s}`, key)))
	stop := runMachine(t, m)
	eventually(t, "machine reaches busy", func() bool { return m.State() == "busy" })
	eventually(t, "success state event", func() bool {
		return len(rec.find(t, "io.choria.machine.watcher.probe.v1.state", map[string]any{"outcome": "success"})) == 1
	})
	stop()

	tr := rec.find(t, TransitionEventType, nil)
	if len(tr) != 1 {
		t.Fatalf("transition events = %d, want 1", len(tr))
	}
	want := map[string]any{
		"protocol": TransitionEventType, "identity": "node1", "id": watchers.InstanceID("node1", "m1"),
		"version": "1.2.3", "machine": "m1", "transition": "go", "from_state": "idle", "to_state": "busy",
	}
	for k, v := range want {
		if tr[0][k] != v {
			t.Errorf("transition data[%q] = %v, want %v", k, tr[0][k], v)
		}
	}
	st := rec.find(t, "io.choria.machine.watcher.probe.v1.state", nil)[0]
	for k, v := range map[string]any{"detail": "ok", "machine": "m1", "name": "w", "type": "probe", "outcome": "success"} {
		if st[k] != v {
			t.Errorf("state data[%q] = %v, want %v", k, st[k], v)
		}
	}
	if _, ok := st["transition_error"]; ok {
		t.Errorf("state data has transition_error %v, want none", st["transition_error"])
	}
	// As in Choria, the state event precedes the transition it caused.
	all := rec.all()
	if all[0].subject != "choria.machine.watcher.probe.state" {
		t.Errorf("first event = %s on %s, want the state event on choria.machine.watcher.probe.state", all[0].ev.Type(), all[0].subject)
	}
	if all[1].ev.Type() != TransitionEventType || all[1].subject != TransitionSubject {
		t.Errorf("second event = %s on %s, want the transition on %s", all[1].ev.Type(), all[1].subject, TransitionSubject)
	}
	if n := ctl.closed.Load(); n != 1 {
		t.Errorf("Close calls = %d, want 1", n)
	}
}

func TestMachineInvalidTransitionReachesEvent(t *testing.T) {
	ctl, key := newProbe(t)
	ctl.push(step{res: watchers.Result{Outcome: watchers.Success}})
	m, rec := testMachine(t, machineYAML("m2", "1", fmt.Sprintf(`
  - name: w
    type: probe
    success_transition: back
    properties: {key: %s}`, key)))
	runMachine(t, m)
	eventually(t, "state event", func() bool {
		return len(rec.find(t, "io.choria.machine.watcher.probe.v1.state", map[string]any{"outcome": "success"})) == 1
	})
	ev := rec.find(t, "io.choria.machine.watcher.probe.v1.state", nil)[0]
	terr, _ := ev["transition_error"].(string)
	for _, w := range []string{"invalid transition", `"back"`, `state "idle"`, "only in busy"} {
		if !strings.Contains(terr, w) {
			t.Errorf("transition_error = %q, want it to contain %q", terr, w)
		}
	}
	if m.State() != "idle" {
		t.Errorf("State() = %q, want idle", m.State())
	}
	if got := m.Status().Watchers[0].TransitionError; got != terr {
		t.Errorf("Status().Watchers[0].TransitionError = %q, want %q", got, terr)
	}
}

func TestMachineTransition(t *testing.T) {
	_, key := newProbe(t)
	m, rec := testMachine(t, machineYAML("m3", "1", fmt.Sprintf(`
  - name: w
    type: probe
    properties: {key: %s}`, key)))
	ctx := t.Context()
	tests := []struct {
		name       string
		transition string
		wantErr    error
		wantState  string
	}{
		{"unknown", "fly", ErrUnknownTransition, "idle"},
		{"invalid in state", "back", ErrInvalidTransition, "idle"},
		{"valid", "go", nil, "busy"},
		{"self", "again", nil, "busy"},
		{"self again", "again", nil, "busy"},
		{"back", "back", nil, "idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Transition(ctx, tt.transition)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Transition(%q) = %v, want %v", tt.transition, err, tt.wantErr)
			}
			if got := m.State(); got != tt.wantState {
				t.Errorf("State() after %q = %q, want %q", tt.transition, got, tt.wantState)
			}
		})
	}
	var got []string
	for _, d := range rec.find(t, TransitionEventType, nil) {
		got = append(got, fmt.Sprintf("%s:%s>%s", d["transition"], d["from_state"], d["to_state"]))
	}
	want := []string{"go:idle>busy", "again:busy>busy", "again:busy>busy", "back:busy>idle"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transition events (-want +got):\n%s", diff)
	}
	if err := m.Transition(ctx, "back"); err == nil || !strings.Contains(err.Error(), `"back" cannot fire in state "idle", only in busy`) {
		t.Errorf("Transition(back) in idle = %v, want the current and valid states named", err)
	}
}

func TestMachinePokesWatchersOnEveryTransition(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctl, key := newProbe(t)
	m, _ := testMachine(t, machineYAML("m4", "1", fmt.Sprintf(`
  - name: w
    type: probe
    state_match: [busy]
    properties: {key: %s}`, key)))
	stop := runMachine(t, m)
	eventually(t, "initial StateChanged", func() bool { return len(ctl.stateLog()) == 1 })
	if n := ctl.checks.Load(); n != 0 {
		t.Fatalf("checks while inactive = %d, want 0", n)
	}
	ctx := t.Context()
	if err := m.Transition(ctx, "go"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "check after entering busy", func() bool { return ctl.checks.Load() == 1 })
	if err := m.Transition(ctx, "again"); err != nil { // self-transition pokes too
		t.Fatal(err)
	}
	eventually(t, "check after the self-transition", func() bool { return ctl.checks.Load() == 2 })
	if err := m.Transition(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "StateChanged(false)", func() bool { return len(ctl.stateLog()) == 4 })
	stop()
	if diff := cmp.Diff([]bool{false, true, true, false}, ctl.stateLog()); diff != "" {
		t.Errorf("StateChanged calls (-want +got):\n%s", diff)
	}
	if n := ctl.checks.Load(); n != 2 {
		t.Errorf("checks = %d, want 2 (none while idle)", n)
	}
}

func TestMachineErrorsAndPanics(t *testing.T) {
	ctl, key := newProbe(t)
	ctl.push(
		step{panic: true},
		step{err: errors.New("disk on fire")},
	)
	m, rec := testMachine(t, machineYAML("m5", "1", fmt.Sprintf(`
  - name: w
    type: probe
    interval: 1s
    fail_transition: go
    properties: {key: %s}`, key)))
	runMachine(t, m)
	typ := "io.choria.machine.watcher.probe.v1.state"
	eventually(t, "two error events", func() bool { return len(rec.find(t, typ, map[string]any{"outcome": "error"})) == 2 })
	evs := rec.find(t, typ, map[string]any{"outcome": "error"})
	if e := evs[0]["error"]; e != "check panicked: probe asked to panic" {
		t.Errorf("first error = %v, want the recovered panic", e)
	}
	if e := evs[1]["error"]; e != "disk on fire" {
		t.Errorf("second error = %v, want disk on fire", e)
	}
	if _, ok := evs[0]["transition_error"]; ok {
		t.Errorf("first error event has transition_error %v; the fail transition go was valid in idle", evs[0]["transition_error"])
	}
	if te, _ := evs[1]["transition_error"].(string); !strings.Contains(te, "invalid transition") {
		t.Errorf("second error event transition_error = %q, want invalid transition (already busy)", te)
	}
	st := m.Status().Watchers[0]
	if st.LastOutcome != "error" || st.LastError != "disk on fire" {
		t.Errorf("status = %+v, want last outcome error, disk on fire", st)
	}
}

func TestMachineProvisionFailureClosesWatchers(t *testing.T) {
	ok, okKey := newProbe(t)
	bad, badKey := newProbe(t)
	bad.provisionErr = errors.New("no socket")
	def, err := machine.Parse([]byte(machineYAML("m6", "1", fmt.Sprintf(`
  - name: a
    type: probe
    properties: {key: %s}
  - name: b
    type: probe
    properties: {key: %s}`, okKey, badKey))))
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenDataStore(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewMachine(def, MachineConfig{Data: store})
	if err == nil || !strings.Contains(err.Error(), `watcher "b" (probe): provision: no socket`) {
		t.Fatalf("NewMachine() = %v, want the provision error naming watcher b", err)
	}
	if ok.closed.Load() != 1 || bad.closed.Load() != 1 {
		t.Errorf("Close calls = %d, %d, want 1, 1", ok.closed.Load(), bad.closed.Load())
	}
}

func TestMachineDeps(t *testing.T) {
	ctl, key := newProbe(t)
	m, _ := testMachine(t, machineYAML("m7", "1", fmt.Sprintf(`
  - name: w
    type: probe
    properties: {key: %s}`, key)))
	ctl.mu.Lock()
	d := ctl.deps
	ctl.mu.Unlock()
	if d.Machine != "m7" || d.Watcher != "w" || d.Identity != "node1" || d.Dir != m.dir || d.Data == nil || d.Facts == nil || d.Log == nil {
		t.Errorf("Deps = %+v, want machine, watcher, identity, dir, data, facts and log set", d)
	}
	if d.Facts()["os"] == nil {
		t.Errorf("Deps.Facts() = %v, want built-in facts", d.Facts())
	}
}

func TestMachineRunsOnce(t *testing.T) {
	_, key := newProbe(t)
	m, _ := testMachine(t, machineYAML("m8", "1", fmt.Sprintf(`
  - name: w
    type: probe
    properties: {key: %s}`, key)))
	runMachine(t, m)
	eventually(t, "machine started", func() bool { return !m.Status().StartTime.IsZero() })
	if err := m.Run(t.Context()); !errors.Is(err, ErrMachineStarted) {
		t.Errorf("second Run() = %v, want ErrMachineStarted", err)
	}
}

func TestMachineStreamTriggers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctl, key := newProbe(t)
	m, rec := testMachine(t, machineYAML("m9", "1", fmt.Sprintf(`
  - name: s
    type: probe_stream
    properties: {key: %s}`, key)))
	stop := runMachine(t, m)
	eventually(t, "stream started", func() bool { return ctl.triggerFunc() != nil })
	eventually(t, "initial check", func() bool { return ctl.checks.Load() == 1 })
	ctl.push(step{res: watchers.Result{Outcome: watchers.Report, State: map[string]any{"seen": 1}}})
	ctl.triggerFunc()()
	eventually(t, "triggered check reported", func() bool {
		return len(rec.find(t, "io.choria.machine.watcher.probe_stream.v1.state", map[string]any{"outcome": "report", "seen": 1})) == 1
	})
	if m.State() != "idle" {
		t.Errorf("State() = %q after a Report, want idle (no transition)", m.State())
	}
	stop()
}

// TestMachineOnChange: the change hook fires when what a status report
// shows changes (a watcher's last error appears or clears, a transition)
// and not for a routine check, so a status writer builds its document
// only then. The error clears on a check that publishes no event.
func TestMachineOnChange(t *testing.T) {
	ctl, key := newProbe(t)
	def, err := machine.Parse([]byte(machineYAML("m9", "1", fmt.Sprintf(`
  - name: w
    type: probe_stream
    properties: {key: %s}`, key))))
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenDataStore(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int64
	m, err := NewMachine(def, MachineConfig{Dir: t.TempDir(), Identity: "node1", Publisher: &recorder{}, Data: store,
		OnChange: func() { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	runMachine(t, m)
	eventually(t, "the stream started", func() bool { return ctl.triggerFunc() != nil })
	check := func(s ...step) {
		t.Helper()
		ctl.push(s...)
		n := ctl.checks.Load()
		ctl.triggerFunc()()
		eventually(t, "a check", func() bool { return ctl.checks.Load() > n && len(ctl.steps) == 0 })
	}
	wantChanges := func(want int64) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d changes", want), func() bool { return changes.Load() == want })
	}
	base := changes.Load() // the first check at the start is routine
	check(step{err: errors.New("boom")})
	wantChanges(base + 1)
	check() // unchanged, no event: the error clears
	wantChanges(base + 2)
	check() // routine
	check()
	if err := m.Transition(t.Context(), "go"); err != nil {
		t.Fatal(err)
	}
	wantChanges(base + 3)
	if st := m.Status(); st.State != "busy" || st.Watchers[0].LastError != "" {
		t.Errorf("status = %+v, want busy and no error", st)
	}
}
