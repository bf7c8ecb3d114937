package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mms-io/mms/watchers"
)

// inBubble runs a machine inside a synctest bubble: fake time, so the
// runner's real timers can be checked without sleeping for real. The probe
// is created inside the bubble (blocking on its channels must count as
// durable); prep scripts it before the machine starts. yaml renders the
// machine for the probe's key.
func inBubble(t *testing.T, yaml func(key string) string, prep func(ctl *probeCtl), body func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		ctl, key := newProbe(t)
		if prep != nil {
			prep(ctl)
		}
		m, rec := testMachine(t, yaml(key))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		body(t, ctl, m, rec)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

// oneWatcher renders a machine with one watcher of type typ whose extra
// YAML lines (indented by four spaces) are given.
func oneWatcher(typ, extra string) func(key string) string {
	return func(key string) string {
		return machineYAML("bubble", "1", fmt.Sprintf(`
  - name: w
    type: %s
%s
    properties: {key: %s}`, typ, extra, key))
	}
}

// at advances the bubble's clock to since+d and waits for every goroutine
// to settle.
func at(since time.Time, d time.Duration) {
	time.Sleep(time.Until(since.Add(d)))
	synctest.Wait()
}

func wantChecks(t *testing.T, ctl *probeCtl, when string, want int64) {
	t.Helper()
	if got := ctl.checks.Load(); got != want {
		t.Errorf("checks at %s = %d, want %d", when, got, want)
	}
}

func TestRunnerInterval(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		extra string
	}{
		{"machine.yaml interval", "probe", "    interval: 10s"},
		{"type default interval", "probe_tick", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, oneWatcher(tt.typ, tt.extra), nil, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
				start := time.Now()
				at(start, 0)
				wantChecks(t, ctl, "start", 1)
				at(start, 9*time.Second)
				wantChecks(t, ctl, "9s", 1)
				at(start, 35*time.Second)
				wantChecks(t, ctl, "35s", 4)
			})
		})
	}
}

func TestRunnerErrorBackoff(t *testing.T) {
	boom := errors.New("boom")
	prep := func(ctl *probeCtl) {
		ctl.push(step{err: boom}, step{err: boom}, step{err: boom}, step{res: watchers.Result{Outcome: watchers.Report}})
	}
	inBubble(t, oneWatcher("probe", "    interval: 1s"), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		// Errors at 0, 1s and 3s (backoff 1s, 2s, 4s); a Report at 7s
		// resets the backoff to the interval: 8s, 9s.
		for _, c := range []struct {
			at   time.Duration
			want int64
		}{{500 * time.Millisecond, 1}, {1500 * time.Millisecond, 2}, {2900 * time.Millisecond, 2}, {3500 * time.Millisecond, 3}, {6900 * time.Millisecond, 3}, {7500 * time.Millisecond, 4}, {8500 * time.Millisecond, 5}, {9500 * time.Millisecond, 6}} {
			at(start, c.at)
			wantChecks(t, ctl, c.at.String(), c.want)
		}
		if n := len(rec.find(t, "io.choria.machine.watcher.probe.v1.state", map[string]any{"outcome": "error", "error": "boom"})); n != 3 {
			t.Errorf("error events = %d, want 3", n)
		}
	})
}

func TestRunnerBackoffNeverBeforeInterval(t *testing.T) {
	prep := func(ctl *probeCtl) { ctl.push(step{err: errors.New("boom")}) }
	inBubble(t, oneWatcher("probe", "    interval: 10s"), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, 9*time.Second)
		wantChecks(t, ctl, "9s", 1)
		at(start, 10*time.Second+time.Millisecond)
		wantChecks(t, ctl, "10s", 2)
	})
}

func TestErrorBackoff(t *testing.T) {
	tests := []struct {
		failures int
		interval time.Duration
		want     time.Duration
	}{
		{1, 0, time.Second},
		{2, 0, 2 * time.Second},
		{4, 0, 8 * time.Second},
		{9, 0, 256 * time.Second},
		{10, 0, 5 * time.Minute},
		{1000, 0, 5 * time.Minute},
		{1, time.Minute, time.Minute},
		{10, time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%v", tt.failures, tt.interval), func(t *testing.T) {
			if got := errorBackoff(tt.failures, tt.interval); got != tt.want {
				t.Errorf("errorBackoff(%d, %v) = %v, want %v", tt.failures, tt.interval, got, tt.want)
			}
		})
	}
}

func TestRunnerResultAfter(t *testing.T) {
	prep := func(ctl *probeCtl) {
		ctl.push(step{res: watchers.Result{Outcome: watchers.Unchanged, After: 3 * time.Second}})
	}
	inBubble(t, oneWatcher("probe", ""), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, 2900*time.Millisecond)
		wantChecks(t, ctl, "2.9s", 1)
		at(start, 3100*time.Millisecond)
		wantChecks(t, ctl, "3.1s", 2)
		at(start, time.Hour) // no interval: nothing more
		wantChecks(t, ctl, "1h", 2)
		if evs := rec.all(); len(evs) != 0 {
			t.Errorf("events = %d, want none for Unchanged outcomes", len(evs))
		}
	})
}

func TestRunnerAnnounce(t *testing.T) {
	prep := func(ctl *probeCtl) {
		ctl.push(step{res: watchers.Result{Outcome: watchers.Report, State: map[string]any{"level": 3}}})
	}
	inBubble(t, oneWatcher("probe", "    announce_interval: 1m"), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, 150*time.Second)
		typ := "io.choria.machine.watcher.probe.v1.state"
		if n := len(rec.find(t, typ, map[string]any{"outcome": "report", "level": 3})); n != 3 {
			t.Errorf("report events after 2.5m = %d, want 3 (the check and two announces)", n)
		}
		if n := len(rec.find(t, typ, map[string]any{"announce": true})); n != 2 {
			t.Errorf("announce events = %d, want 2", n)
		}
	})
}

func TestRunnerCheckTimeout(t *testing.T) {
	prep := func(ctl *probeCtl) { ctl.push(step{block: true}) }
	inBubble(t, oneWatcher("probe", ""), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, 4*time.Second)
		if n := len(rec.all()); n != 0 {
			t.Errorf("events before the 5s timeout = %d, want 0", n)
		}
		at(start, 5*time.Second+time.Millisecond)
		evs := rec.find(t, "io.choria.machine.watcher.probe.v1.state", map[string]any{
			"outcome": "error", "error": "check timed out after 5s: context deadline exceeded",
		})
		if len(evs) != 1 {
			t.Errorf("timeout events = %d (all: %d), want 1", len(evs), len(rec.all()))
		}
	})
}

func TestRunnerGating(t *testing.T) {
	inBubble(t, oneWatcher("probe", "    interval: 1s\n    state_match: [busy]"), nil, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, time.Minute)
		wantChecks(t, ctl, "1m idle", 0)
		if err := m.Transition(t.Context(), "go"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		wantChecks(t, ctl, "entering busy", 1)
		at(start, time.Minute+2500*time.Millisecond)
		wantChecks(t, ctl, "2.5s busy", 3)
		if err := m.Transition(t.Context(), "back"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		at(start, 2*time.Minute)
		wantChecks(t, ctl, "back in idle", 3)
	})
}

func TestRunnerStreamRestart(t *testing.T) {
	prep := func(ctl *probeCtl) {
		ctl.streamErrs <- errors.New("lost")
		ctl.streamErrs <- errors.New("lost again")
	}
	inBubble(t, oneWatcher("probe_stream", ""), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		for _, c := range []struct {
			at   time.Duration
			want int64
		}{
			{0, 1},                       // started, failed at once
			{1100 * time.Millisecond, 2}, // restarted after 1s, failed again
			{2900 * time.Millisecond, 2}, // next restart is 2s later
			{3200 * time.Millisecond, 3}, // running until the machine stops
			{time.Hour, 3},
		} {
			at(start, c.at)
			if n := ctl.streams.Load(); n != c.want {
				t.Errorf("Stream calls at %v = %d, want %d", c.at, n, c.want)
			}
		}
	})
}

func TestMachineSplayStart(t *testing.T) {
	yaml := func(key string) string { return "splay_start: 10\n" + oneWatcher("probe", "")(key) }
	inBubble(t, yaml, nil, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		at(start, 10*time.Second)
		wantChecks(t, ctl, "10s", 1)
		if st := m.Status().StartTime; st.Before(start) || st.After(start.Add(10*time.Second)) {
			t.Errorf("StartTime = %v, want within the 10s splay after %v", st, start)
		}
	})
}

func TestPacer(t *testing.T) {
	var p pacer
	now := time.Unix(1000, 0)
	var got []time.Duration
	for range 12 {
		d := p.delay(now)
		got = append(got, d)
		now = now.Add(d)
	}
	want := []time.Duration{0, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("delay #%d = %v, want %v", i, got[i], want[i])
		}
	}
	if d := p.delay(now.Add(2 * time.Second)); d != 0 {
		t.Errorf("delay after two quiet seconds = %v, want 0", d)
	}

	// Transitions from outside changes a few seconds apart (an operator
	// publishing specs) are never delayed.
	var q pacer
	for i := range 20 {
		now = now.Add(1500 * time.Millisecond)
		if d := q.delay(now); d != 0 {
			t.Fatalf("delay #%d of transitions 1.5 s apart = %v, want 0", i, d)
		}
	}
}

// selfLoop is a one-state machine whose watcher's success transition
// returns to the same state, so each success pokes the watcher again.
func selfLoop(typ string) func(key string) string {
	return func(key string) string {
		return fmt.Sprintf(`name: loop
version: "1"
initial_state: idle
transitions:
  - name: again
    from: [idle]
    destination: idle
watchers:
  - name: w
    type: %s
    success_transition: again
    properties: {key: %s}
`, typ, key)
	}
}

// TestPacingSlowsLoops checks that a watcher whose transition pokes itself
// (a loop) is slowed down: 25 ms doubling to 5 s between transitions, so
// 11 checks in the first 10 s instead of a spin.
func TestPacingSlowsLoops(t *testing.T) {
	prep := func(ctl *probeCtl) {
		for range 64 {
			ctl.push(step{res: watchers.Result{Outcome: watchers.Success}})
		}
	}
	inBubble(t, selfLoop("probe"), prep, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		start := time.Now()
		synctest.Wait()
		// Checks at 0 (start), 0, 0.025, 0.075, 0.175, 0.375, 0.775, 1.575,
		// 3.175, 6.375 s, then 11.375 s.
		at(start, 10*time.Second)
		wantChecks(t, ctl, "10s", 11)
	})
}

// TestPacingSparesOutsideChanges checks that transitions caused by outside
// changes (a streamer's trigger, as the kv watcher fires on every put) are
// never delayed, however many come in a row.
func TestPacingSparesOutsideChanges(t *testing.T) {
	inBubble(t, selfLoop("probe_stream"), nil, func(t *testing.T, ctl *probeCtl, m *Machine, rec *recorder) {
		synctest.Wait()
		trigger := ctl.triggerFunc()
		if trigger == nil {
			t.Fatal("the stream did not start")
		}
		for i := range 20 {
			ctl.push(step{res: watchers.Result{Outcome: watchers.Success}})
			trigger()
			synctest.Wait() // no time passes: a delayed transition would not have fired
			if got := len(rec.find(t, TransitionEventType, map[string]any{"transition": "again"})); got != i+1 {
				t.Fatalf("after trigger %d: %d transitions fired, want %d", i+1, got, i+1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
