package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/watchers"
)

// Runner timing. A watcher never runs a loop of its own: the runner decides
// when it checks.
const (
	// DefaultCheckTimeout bounds one Check when the type sets no Timeout.
	DefaultCheckTimeout = time.Minute
	// errorBackoffFirst is the delay after a first failed check or stream.
	errorBackoffFirst = time.Second
	// errorBackoffMax caps the error backoff.
	errorBackoffMax = 5 * time.Minute
	// streamHealthy is how long a stream must run before its failure count
	// resets.
	streamHealthy = time.Minute
)

// WatcherStatus is what a watcher last did, as reported by [Host.States].
type WatcherStatus struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Active is whether the machine's state is one the watcher runs in.
	Active bool `json:"active"`
	// LastCheck is when the last check finished (zero before the first).
	LastCheck time.Time `json:"last_check,omitzero"`
	// LastOutcome is unchanged, report, success, failure or error.
	LastOutcome string `json:"last_outcome,omitempty"`
	// LastError is the last check's error, if it failed.
	LastError string `json:"last_error,omitempty"`
	// TransitionError is why the last transition the watcher asked for did
	// not fire, if it did not.
	TransitionError string `json:"transition_error,omitempty"`
}

// runner drives one watcher of a machine from one goroutine: state gating,
// interval and Result.After scheduling, pokes on transitions, stream
// triggers, per-check timeouts, panic recovery, error backoff, transitions
// and state events. It is the only caller of Check and StateChanged.
type runner struct {
	def  machine.WatcherDef
	info watchers.Info
	w    watchers.Watcher
	m    *Machine
	log  *slog.Logger
	// extra are states the watcher runs in besides its state_match
	// (watchers.StateExtender), read once at the start of run.
	extra []string

	poke    chan struct{} // machine changed state; buffer 1, coalescing
	trigger chan struct{} // the Streamer asked for a check; buffer 1

	mu     sync.Mutex
	status WatcherStatus
}

func newRunner(m *Machine, def machine.WatcherDef, info watchers.Info, w watchers.Watcher, log *slog.Logger) *runner {
	return &runner{
		def: def, info: info, w: w, m: m, log: log,
		poke:    make(chan struct{}, 1),
		trigger: make(chan struct{}, 1),
		status:  WatcherStatus{Name: def.Name, Type: def.Type},
	}
}

// notify pokes the runner: the machine's state changed.
func (r *runner) notify() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// requestCheck is the trigger handed to Streamer.Stream.
func (r *runner) requestCheck() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// interval is the watcher's periodic check interval; zero means none.
func (r *runner) interval() time.Duration {
	if r.def.Interval > 0 {
		return r.def.Interval.Std()
	}
	return r.info.DefaultInterval.Std()
}

// errorBackoff is the delay before the next periodic check after failures
// consecutive errors: 1s doubling up to 5m, never shorter than interval.
func errorBackoff(failures int, interval time.Duration) time.Duration {
	return max(backoff.Policy{First: errorBackoffFirst, Max: errorBackoffMax}.Delay(failures), interval)
}

// run drives the watcher until ctx is done.
func (r *runner) run(ctx context.Context) {
	if e, ok := r.w.(watchers.StateExtender); ok && len(r.def.StateMatch) > 0 {
		r.extra = e.ExtraStates()
	}
	if s, ok := r.w.(watchers.Streamer); ok {
		var wg sync.WaitGroup
		wg.Go(func() { r.stream(ctx, s) })
		defer wg.Wait()
	}
	var announce <-chan time.Time
	if a := r.def.AnnounceInterval.Std(); a > 0 {
		t := time.NewTicker(a)
		defer t.Stop()
		announce = t.C
	}
	// Each schedule takes a new timer rather than resetting the last: a
	// reset of a timer the runtime holds marks it modified, and when a
	// modified timer comes due the runtime walks every timer of its
	// processor, so in a process with thousands of machines (a fleet in
	// one process, a node with many machines) each reset costs in
	// proportion to them all; adding a new timer costs their logarithm.
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var timerC <-chan time.Time
	schedule := func(d time.Duration) {
		if timer != nil {
			timer.Stop()
		}
		if d <= 0 {
			timer, timerC = nil, nil
			return
		}
		timer = time.NewTimer(d)
		timerC = timer.C
	}

	var (
		failures int
		last     *stateReport
	)
	// check runs one check; paced says a transition poked it, so a
	// transition it fires may be part of a loop (see pacer).
	check := func(paced bool) {
		rep, next, ok := r.checkOnce(ctx, &failures, paced)
		if !ok {
			return
		}
		if rep != nil {
			last = rep
		}
		schedule(next)
	}

	select { // a poke queued before the start is covered by the start
	case <-r.poke:
	default:
	}
	active := r.observe()
	if active {
		check(false)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.poke:
			if active = r.observe(); active {
				check(true)
			} else {
				schedule(0)
			}
		case <-r.trigger:
			if active {
				check(false)
			}
		case <-timerC:
			timerC = nil
			if active {
				check(false)
			}
		case <-announce:
			if last != nil {
				rep := *last
				rep.announce = true
				r.m.publishState(ctx, rep)
			}
		}
	}
}

// checkOnce runs one check and acts on it: transition, event, status. It
// returns the report to announce (nil if none; a quiet one was not
// published), when to check next (zero for
// no periodic check) and false when ctx ended during the check.
func (r *runner) checkOnce(ctx context.Context, failures *int, paced bool) (*stateReport, time.Duration, bool) {
	res, err := r.safeCheck(ctx)
	if ctx.Err() != nil {
		return nil, 0, false
	}
	outcome := res.Outcome.String()
	transition := ""
	switch {
	case err != nil:
		outcome = "error"
		transition = r.def.FailTransition
		r.log.Warn("watcher check failed", "error", err)
	case res.Outcome == watchers.Unchanged:
	case res.Transition != "":
		transition = res.Transition
	case res.Outcome == watchers.Success:
		transition = r.def.SuccessTransition
	case res.Outcome == watchers.Failure:
		transition = r.def.FailTransition
	}

	var rep *stateReport
	if err != nil || res.Outcome != watchers.Unchanged {
		rep = &stateReport{
			eventType: r.info.EventType(), watcherType: r.info.Type, watcher: r.def.Name,
			outcome: outcome, state: res.State, err: err,
		}
	}
	publish := func() {
		if rep != nil && (err != nil || !res.Quiet) {
			r.m.publishState(ctx, *rep)
		}
	}
	var terr error
	if transition != "" {
		if paced {
			if d := r.m.pace.delay(time.Now()); d > 0 && !backoff.Sleep(ctx, d) {
				return nil, 0, false
			}
		}
		// The state event goes out first, then the transition (Choria's
		// order); the event already says whether the transition fires.
		_, _, terr = r.m.transition(ctx, transition, func(terr error) {
			if rep != nil {
				rep.transErr = terr
			}
			publish()
		})
		if terr != nil {
			r.log.Warn("watcher transition did not fire", "transition", transition, "outcome", outcome, "error", terr)
		}
	} else {
		publish()
	}

	r.mu.Lock()
	r.status.LastCheck = time.Now()
	r.status.LastOutcome = outcome
	errChanged := r.status.LastError != errString(err)
	r.status.LastError = errString(err)
	if transition != "" {
		r.status.TransitionError = errString(terr)
	}
	r.mu.Unlock()
	if errChanged {
		r.m.changed()
	}

	if err != nil {
		*failures++
		return rep, errorBackoff(*failures, r.interval()), true
	}
	*failures = 0
	if res.After > 0 {
		return rep, res.After, true
	}
	return rep, r.interval(), true
}

// safeCheck runs Check under the type's timeout and turns a panic into an
// error.
func (r *runner) safeCheck(ctx context.Context) (res watchers.Result, err error) {
	timeout := r.info.Timeout.Std()
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("watcher check panicked", "panic", p, "stack", string(debug.Stack()))
			res, err = watchers.Result{}, fmt.Errorf("check panicked: %v", p)
		}
	}()
	res, err = r.w.Check(cctx)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("check timed out after %v: %w", timeout, err)
	}
	return res, err
}

// observe reads whether the watcher is active in the machine's current
// state and tells a StateObserver.
func (r *runner) observe() bool {
	state := r.m.fsm.current()
	active := matchesState(r.def.StateMatch, state) || slices.Contains(r.extra, state)
	r.mu.Lock()
	r.status.Active = active
	r.mu.Unlock()
	if o, ok := r.w.(watchers.StateObserver); ok {
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.log.Error("watcher StateChanged panicked", "panic", p, "stack", string(debug.Stack()))
				}
			}()
			o.StateChanged(active)
		}()
	}
	return active
}

// statusCopy returns the watcher's status.
func (r *runner) statusCopy() WatcherStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// matchesState reports whether a watcher with stateMatch runs in state.
func matchesState(stateMatch []string, state string) bool {
	if len(stateMatch) == 0 {
		return true
	}
	for _, s := range stateMatch {
		if s == state {
			return true
		}
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
