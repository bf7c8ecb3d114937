package timerwatcher

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []struct {
	name  string
	props string
	err   string
	timer time.Duration
	warn  string // the warning watchers.Decode returns, if any
}{
	{name: "duration", props: `{"timer":"5m"}`, timer: 5 * time.Minute},
	{name: "seconds", props: `{"timer":30,"splay":true}`, timer: 30 * time.Second},
	{name: "raised to one second", props: `{"timer":"200ms"}`, timer: time.Second},
	// Choria's timer_test.go builds a timer watcher with no properties
	// (map[string]any{}) and gets a 1s timer.
	{name: "missing", props: `{}`, timer: time.Second, warn: noTimer},
	{name: "zero", props: `{"timer":"0s"}`, timer: time.Second, warn: noTimer},
	{name: "negative", props: `{"timer":"-5s"}`, err: `properties: invalid duration "-5s": negative`},
	{name: "overflow", props: `{"timer":1e30}`, err: `properties: invalid duration "1e30": too long`},
	{name: "garbage", props: `{"timer":"soon"}`, err: `properties: invalid duration "soon": want e.g. 30s, 5m, 1h30m, 2d`},
	{name: "typo", props: `{"timer":"1m","spaly":true}`, err: `properties: json: unknown field "spaly"`},
	{name: "splay not a bool", props: `{"timer":"1m","splay":"yes"}`, err: "properties: json: cannot unmarshal string into Go struct field Watcher.splay of type bool"},
	{name: "splay as a string", props: `{"timer":"1m","splay":"true"}`, timer: time.Minute, warn: `splay: "true" is a string, read as true: write splay: true`},
}

const noTimer = "timer: not set (or 0); Choria's default of 1s applies: write timer: 1s"

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := watchers.Build("timer", json.RawMessage(tt.props))
			if got := errString(err); got != tt.err {
				t.Fatalf("Build(timer, %s) err = %q, want %q", tt.props, got, tt.err)
			}
			if err == nil && w.(*Watcher).timer != tt.timer {
				t.Errorf("Build(timer, %s) timer = %v, want %v", tt.props, w.(*Watcher).timer, tt.timer)
			}
			if err != nil {
				return
			}
			_, warnings, _ := watchers.Decode("timer", json.RawMessage(tt.props))
			var want []string
			if tt.warn != "" {
				want = []string{tt.warn}
			}
			if diff := cmp.Diff(want, warnings); diff != "" {
				t.Errorf("Decode(timer, %s) warnings (-want +got):\n%s", tt.props, diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// build returns a timer watcher on a manual clock.
func build(t *testing.T, props string) (*Watcher, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	w := watchertest.Build(t, "timer", props).(*Watcher)
	w.now = c.now
	return w, c
}

func check(t *testing.T, w *Watcher) watchers.Result {
	t.Helper()
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatalf("Check() err = %v", err)
	}
	return res
}

func want(o watchers.Outcome, state string, timer, after time.Duration) watchers.Result {
	return watchers.Result{Outcome: o, State: State{State: state, Timer: timer}, After: after}
}

func TestTimer(t *testing.T) {
	const d = time.Minute
	type step struct {
		do   func(w *Watcher, c *clock)
		want watchers.Result
	}
	start := func(w *Watcher, _ *clock) { w.StateChanged(true) }
	stop := func(w *Watcher, _ *clock) { w.StateChanged(false) }
	wait := func(x time.Duration) func(*Watcher, *clock) { return func(_ *Watcher, c *clock) { c.advance(x) } }
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "not started", steps: []step{
			{do: wait(time.Hour), want: want(watchers.Unchanged, "stopped", 0, 0)},
		}},
		{name: "runs out", steps: []step{
			{do: start, want: want(watchers.Report, "running", d, d)},
			{do: wait(20 * time.Second), want: want(watchers.Unchanged, "running", d, 40*time.Second)},
			{do: wait(40*time.Second - 1), want: want(watchers.Unchanged, "running", d, 1)},
			{do: wait(1), want: want(watchers.Failure, "stopped", d, 0)},
			{do: wait(time.Hour), want: want(watchers.Unchanged, "stopped", d, 0)},
		}},
		{name: "checked late", steps: []step{
			{do: start, want: want(watchers.Report, "running", d, d)},
			{do: wait(time.Hour), want: want(watchers.Failure, "stopped", d, 0)},
		}},
		{name: "restart resets", steps: []step{
			{do: start, want: want(watchers.Report, "running", d, d)},
			{do: wait(50 * time.Second), want: want(watchers.Unchanged, "running", d, 10*time.Second)},
			{do: start, want: want(watchers.Report, "running", d, d)},
			{do: wait(50 * time.Second), want: want(watchers.Unchanged, "running", d, 10*time.Second)},
			{do: wait(10 * time.Second), want: want(watchers.Failure, "stopped", d, 0)},
		}},
		{name: "leaving the state cancels", steps: []step{
			{do: start, want: want(watchers.Report, "running", d, d)},
			{do: stop, want: want(watchers.Unchanged, "stopped", d, 0)},
			{do: wait(time.Hour), want: want(watchers.Unchanged, "stopped", d, 0)},
			{do: start, want: want(watchers.Report, "running", d, d)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, c := build(t, `{"timer":"1m"}`)
			for i, s := range tt.steps {
				s.do(w, c)
				if diff := cmp.Diff(s.want, check(t, w)); diff != "" {
					t.Fatalf("step %d: Check() (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestSplay(t *testing.T) {
	w, c := build(t, `{"timer":"1m","splay":true}`)
	picks := []time.Duration{15 * time.Second, 0}
	w.randN = func(n time.Duration) time.Duration {
		if n != time.Minute {
			t.Errorf("randN(%v), want randN(1m)", n)
		}
		p := picks[0]
		picks = picks[1:]
		return p
	}
	w.StateChanged(true)
	if diff := cmp.Diff(want(watchers.Report, "running", 15*time.Second, 15*time.Second), check(t, w)); diff != "" {
		t.Errorf("first start (-want +got):\n%s", diff)
	}
	c.advance(5 * time.Second)
	w.StateChanged(true) // each start picks again
	if diff := cmp.Diff(want(watchers.Failure, "stopped", 0, 0), check(t, w)); diff != "" {
		t.Errorf("second start (-want +got):\n%s", diff)
	}
}

func TestSplayRange(t *testing.T) {
	w, _ := build(t, `{"timer":"2s","splay":true}`)
	for range 200 {
		w.StateChanged(true)
		if w.current < 0 || w.current >= 2*time.Second {
			t.Fatalf("splayed timer = %v, want in [0, 2s)", w.current)
		}
	}
}

// FuzzDecodeProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: it must never panic, and a config it accepts
// must have a timer of at least MinTimer.
func FuzzDecodeProperties(f *testing.F) {
	for _, tt := range validateTests {
		f.Add([]byte(tt.props))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := watchers.Build("timer", b)
		if err != nil {
			return
		}
		if tw := w.(*Watcher); tw.timer < MinTimer {
			t.Fatalf("Build(%q) accepted timer %v", b, tw.timer)
		}
	})
}
