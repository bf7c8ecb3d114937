// Package timerwatcher is the "timer" watcher: a timer that starts when the
// machine enters a state the watcher runs in and, when it expires, fires
// the watcher's fail_transition.
//
// Entering a matching state starts the timer; any later transition into a
// matching state restarts it from the full duration; a transition to a
// state the watcher does not run in cancels it. With splay the duration of
// each start is a random value in [0, timer).
//
// The timer never succeeds, so a success_transition on a timer watcher is
// never fired. Choria rejects one; the watcher cannot see its transitions,
// so that check belongs to machine validation.
//
// Events: starting the timer publishes state "running" (a report, no
// transition); expiry publishes state "stopped" with the fail transition.
// Cancelling publishes nothing, because the Runner does not check a watcher
// outside its states.
package timerwatcher

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/mms-io/mms/watchers"
)

// MinTimer is the shortest timer; shorter ones are raised to it (Choria).
const MinTimer = time.Second

func init() {
	watchers.Register(watchers.Info{
		Type:    "timer",
		Version: "v1",
		New: func() watchers.Watcher {
			return &Watcher{now: time.Now, randN: rand.N[time.Duration]}
		},
	})
}

// Watcher is the timer watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// Timer is how long after the state is entered the timer expires.
	// Values under 1s become 1s; left out (or 0), it is Choria's default,
	// 1s, with a warning.
	Timer watchers.Duration `json:"timer"`
	// Splay makes each start pick a random duration in [0, timer).
	Splay bool `json:"splay,omitempty"`

	timer time.Duration // Timer, at least MinTimer; set by Validate

	now   func() time.Time
	randN func(time.Duration) time.Duration // a value in [0, n)

	running  bool
	reported bool          // the current start was reported
	deadline time.Time     // when the running timer expires
	current  time.Duration // duration of the running or last timer
}

// State is the type-specific part of the timer watcher's state event.
type State struct {
	// State is "running" or "stopped".
	State string `json:"state"`
	// Timer is the duration of the running or last timer, in nanoseconds.
	Timer time.Duration `json:"timer"`
}

// Normalize gives a timer without a duration Choria's: 1s (Choria's
// tests build a timer watcher with no properties at all).
func (w *Watcher) Normalize() []string {
	if w.Timer != 0 {
		return nil
	}
	w.Timer = watchers.Duration(MinTimer)
	return []string{"timer: not set (or 0); Choria's default of 1s applies: write timer: 1s"}
}

// Validate checks the properties.
func (w *Watcher) Validate() error {
	if w.Timer == 0 {
		return errors.New("timer: required")
	}
	w.timer = max(w.Timer.Std(), MinTimer)
	return nil
}

// StateChanged starts or restarts the timer when active, and cancels it
// otherwise.
func (w *Watcher) StateChanged(active bool) {
	if !active {
		w.running = false
		return
	}
	w.current = w.timer
	if w.Splay {
		w.current = w.randN(w.timer)
	}
	w.running, w.reported = true, false
	w.deadline = w.now().Add(w.current)
}

// Check reports a new start, asks to be checked again at the deadline, and
// fails when the timer has expired.
func (w *Watcher) Check(context.Context) (watchers.Result, error) {
	if !w.running {
		return watchers.Result{Outcome: watchers.Unchanged, State: w.state()}, nil
	}
	remaining := w.deadline.Sub(w.now())
	if remaining <= 0 {
		w.running = false
		return watchers.Result{Outcome: watchers.Failure, State: w.state()}, nil
	}
	outcome := watchers.Unchanged
	if !w.reported {
		w.reported = true
		outcome = watchers.Report
	}
	return watchers.Result{Outcome: outcome, State: w.state(), After: remaining}, nil
}

func (w *Watcher) state() State {
	s := State{State: "stopped", Timer: w.current}
	if w.running {
		s.State = "running"
	}
	return s
}

var (
	_ watchers.Watcher       = (*Watcher)(nil)
	_ watchers.Normalizer    = (*Watcher)(nil)
	_ watchers.Validator     = (*Watcher)(nil)
	_ watchers.StateObserver = (*Watcher)(nil)
)
