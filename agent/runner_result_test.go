package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/mms-io/mms/watchers"
)

// extraProbe is a probe that also runs in the idle state, whatever its
// state_match says (a watchers.StateExtender).
type extraProbe struct{ probe }

func (p *extraProbe) ExtraStates() []string { return []string{"idle"} }

var _ watchers.StateExtender = (*extraProbe)(nil)

func init() {
	watchers.Register(watchers.Info{
		Type: "probe_extra", Version: "v1", New: func() watchers.Watcher { return new(extraProbe) },
	})
}

func TestRunnerNamedTransition(t *testing.T) {
	ctl, key := newProbe(t)
	ctl.push(
		step{res: watchers.Result{Outcome: watchers.Success, Transition: "go"}},
		step{res: watchers.Result{Outcome: watchers.Report, Transition: "back"}},
		step{res: watchers.Result{Outcome: watchers.Unchanged, Transition: "go"}},
	)
	// success_transition names "again", which cannot fire from idle: the
	// named transitions must win.
	m, rec := testMachine(t, machineYAML("named", "1", fmt.Sprintf(`
  - name: w
    type: probe
    success_transition: again
    properties: {key: %s}`, key)))
	runMachine(t, m)
	eventually(t, "three checks", func() bool { return ctl.checks.Load() >= 3 })
	if s := m.State(); s != "idle" {
		t.Errorf("state = %q, want idle (go, back, and nothing for Unchanged)", s)
	}
	var got []string
	for _, tr := range rec.find(t, TransitionEventType, nil) {
		got = append(got, fmt.Sprint(tr["transition"]))
	}
	if fmt.Sprint(got) != "[go back]" {
		t.Errorf("transitions = %v, want [go back]", got)
	}
	if n := len(rec.find(t, "io.choria.machine.watcher.probe.v1.state", nil)); n != 2 {
		t.Errorf("state events = %d, want 2 (success and report)", n)
	}
}

func TestRunnerQuietResult(t *testing.T) {
	ctl, key := newProbe(t)
	ctl.push(step{res: watchers.Result{Outcome: watchers.Success, Quiet: true, State: map[string]any{"x": 1}}})
	m, rec := testMachine(t, machineYAML("quiet", "1", fmt.Sprintf(`
  - name: w
    type: probe
    state_match: [idle]
    success_transition: go
    properties: {key: %s}`, key)))
	runMachine(t, m)
	eventually(t, "machine reaches busy", func() bool { return m.State() == "busy" })
	if n := len(rec.find(t, TransitionEventType, nil)); n != 1 {
		t.Errorf("transition events = %d, want 1", n)
	}
	if n := len(rec.find(t, "io.choria.machine.watcher.probe.v1.state", nil)); n != 0 {
		t.Errorf("state events = %d, want none for a quiet result", n)
	}
}

func TestRunnerExtraStates(t *testing.T) {
	ctl, key := newProbe(t)
	m, _ := testMachine(t, machineYAML("extra", "1", fmt.Sprintf(`
  - name: w
    type: probe_extra
    state_match: [busy]
    properties: {key: %s}`, key)))
	runMachine(t, m)
	eventually(t, "a check in idle, a state only ExtraStates lists", func() bool { return ctl.checks.Load() == 1 })
	if got := ctl.stateLog(); len(got) == 0 || !got[0] {
		t.Errorf("StateChanged calls = %v, want active at start", got)
	}
}

func TestMachineDepsStateAndInterval(t *testing.T) {
	set, k1 := newProbe(t)
	dflt, k2 := newProbe(t)
	m, _ := testMachine(t, machineYAML("deps", "1", fmt.Sprintf(`
  - name: set
    type: probe
    interval: 7s
    properties: {key: %s}
  - name: default
    type: probe_tick
    properties: {key: %s}`, k1, k2)))
	deps := func(c *probeCtl) watchers.Deps {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.deps
	}
	if got := deps(set).Interval; got != 7*time.Second {
		t.Errorf("Deps.Interval with interval 7s = %v, want 7s", got)
	}
	if got := deps(dflt).Interval; got != 10*time.Second {
		t.Errorf("Deps.Interval of a type with a 10s default = %v, want 10s", got)
	}
	state := deps(set).State
	if state == nil {
		t.Fatal("Deps.State is nil")
	}
	if got := state(); got != "idle" {
		t.Errorf("Deps.State() = %q, want idle", got)
	}
	if err := m.Transition(t.Context(), "go"); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != "busy" {
		t.Errorf("Deps.State() after go = %q, want busy", got)
	}
}

func TestRunnerQuietResultIsAnnounced(t *testing.T) {
	prep := func(ctl *probeCtl) {
		ctl.push(step{res: watchers.Result{Outcome: watchers.Report, Quiet: true, State: map[string]any{"level": 7}}})
	}
	inBubble(t, oneWatcher("probe", "    announce_interval: 1m"), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, 30*time.Second)
		if n := len(rec.all()); n != 0 {
			t.Errorf("events before the announce = %d, want none for a quiet result", n)
		}
		at(start, 90*time.Second)
		typ := "io.choria.machine.watcher.probe.v1.state"
		if n := len(rec.find(t, typ, map[string]any{"announce": true, "level": 7})); n != 1 || len(rec.all()) != 1 {
			t.Errorf("events after 1.5m = %d (announces of the quiet state: %d), want just that announce", len(rec.all()), n)
		}
	})
}
