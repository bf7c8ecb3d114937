package agent

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/machine"
)

// ErrInvalidTransition is returned when a transition cannot fire in the
// machine's current state.
var ErrInvalidTransition = errors.New("invalid transition")

// ErrUnknownTransition is returned for a transition name the machine does
// not define.
var ErrUnknownTransition = errors.New("unknown transition")

// fsm is the machine's state. It only records and checks: publishing and
// poking happen in the Machine, outside its lock.
type fsm struct {
	transitions map[string]machine.Transition

	mu      sync.Mutex
	state   string
	entered map[string]time.Time // first entry of each state since start; nil before
}

func newFSM(def *machine.Definition) *fsm {
	f := &fsm{transitions: map[string]machine.Transition{}, state: def.InitialState}
	for _, t := range def.Transitions {
		f.transitions[t.Name] = t
	}
	return f
}

// current returns the current state.
func (f *fsm) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// fire moves the machine along the transition name. A self-transition
// (destination == current state) is a real transition.
func (f *fsm) fire(name string) (from, to string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.check(name)
	if err != nil {
		return f.state, "", err
	}
	from = f.state
	f.state = t.Destination
	if _, ok := f.entered[t.Destination]; !ok && f.entered != nil {
		f.entered[t.Destination] = time.Now()
	}
	return from, t.Destination, nil
}

// start records that the machine started now, in its current state.
func (f *fsm) start(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entered = map[string]time.Time{f.state: now}
}

// enteredStates returns when each state was first entered since start.
func (f *fsm) enteredStates() map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.entered)
}

// canFire returns the error fire would return now, or nil.
func (f *fsm) canFire(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.check(name)
	return err
}

// check returns the transition name if it can fire in the current state;
// f.mu is held.
func (f *fsm) check(name string) (machine.Transition, error) {
	t, ok := f.transitions[name]
	if !ok {
		return t, fmt.Errorf("%w %q in state %q", ErrUnknownTransition, name, f.state)
	}
	if !slices.Contains(t.From, f.state) {
		return t, fmt.Errorf("%w: %q cannot fire in state %q, only in %s", ErrInvalidTransition, name, f.state, strings.Join(t.From, ", "))
	}
	return t, nil
}

// available lists the transitions that can fire in the current state.
func (f *fsm) available() []string {
	f.mu.Lock()
	state := f.state
	f.mu.Unlock()
	var out []string
	for name, t := range f.transitions {
		if slices.Contains(t.From, state) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// pacer spaces out transitions that may form a loop, so that two watchers
// bouncing a machine between states (or one watcher firing a
// self-transition it is itself poked by) cannot spin. The runner asks it
// only for transitions fired by checks that a transition poked; checks
// caused by an interval, a stream (the kv watcher on every put) or the
// start are never delayed. A paced transition that follows the previous
// one (once that one's own wait is over) by less than paceQuiet waits
// 25 ms, doubling up to 5 s. The wait happens in the runner's goroutine,
// never under a lock.
type pacer struct {
	mu   sync.Mutex
	n    int
	last time.Time
}

const (
	paceFirst = 25 * time.Millisecond
	paceMax   = 5 * time.Second
	paceQuiet = time.Second
)

// delay reserves a slot for a transition at now and returns how long the
// caller should wait before firing it.
func (p *pacer) delay(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 || now.Sub(p.last) > paceQuiet {
		p.n = 0
	}
	d := time.Duration(0)
	if p.n > 0 {
		d = backoff.Policy{First: paceFirst, Max: paceMax}.Delay(p.n)
	}
	p.n++
	p.last = now.Add(d)
	return d
}
