package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/watchers"
)

// ErrMachineStarted is returned by [Machine.Run] when the machine already
// ran or is running: a Machine runs once.
var ErrMachineStarted = errors.New("machine already started")

// MachineConfig is what a machine needs from its node.
type MachineConfig struct {
	// Dir is the machine's directory: relative watcher paths resolve
	// against it.
	Dir string
	// Identity is the node identity, carried in every event.
	Identity string
	// Log receives the machine's logs; nil discards them.
	Log *slog.Logger
	// Publisher receives the machine's events; nil only logs them.
	Publisher Publisher
	// Data is the machine's persistent data store (required).
	Data watchers.DataStore
	// Facts returns the node's facts; nil serves [BuiltinFacts].
	Facts func() map[string]any
	// Conn is the node's NATS connection, if any.
	Conn *nats.Conn
	// OnReconnect registers reconnect hooks for watchers; see
	// watchers.Deps.OnReconnect.
	OnReconnect func(f func()) (remove func())
	// Metrics, when set, returns each watcher's metrics sink; see
	// watchers.Deps.Metrics.
	Metrics func(machine, watcher string) watchers.MetricsSink
	// Host lets watchers load and unload machines, if hosted.
	Host watchers.Host
	// OnChange, when set, is called after something [Machine.Status]
	// reports that a status document shows changed: the machine's state
	// (a transition) or a watcher's last error. It is called from the
	// machine's goroutines and must not block.
	OnChange func()
}

// MachineStatus is the state of a running machine.
type MachineStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	// Path is the machine's directory.
	Path string `json:"path"`
	// ID is the machine's stable instance id (see [watchers.InstanceID]).
	ID string `json:"id"`
	// StartTime is when the watchers started (zero while splaying).
	StartTime time.Time `json:"start_time,omitzero"`
	// AvailableTransitions can fire in State.
	AvailableTransitions []string `json:"available_transitions"`
	// Entered is when each state was first entered since StartTime (the
	// initial state at StartTime): what a health gate reads.
	Entered map[string]time.Time `json:"entered,omitempty"`
	// CompiledIn marks machines registered from Go.
	CompiledIn bool            `json:"compiled_in,omitempty"`
	Watchers   []WatcherStatus `json:"watchers"`
}

// Machine is one running autonomous machine: its state, its watchers and
// their runners. Build it with [NewMachine] and run it with [Machine.Run].
type Machine struct {
	def      *machine.Definition
	dir      string
	ref      machineRef
	fsm      *fsm
	pace     pacer
	notifier *notifier
	log      *slog.Logger
	runners  []*runner
	onChange func() // MachineConfig.OnChange, nil when not set

	// fireMu serialises transitions with their events, so events leave in
	// the order the state changed.
	fireMu    sync.Mutex
	started   atomic.Bool
	closeOnce sync.Once

	mu        sync.Mutex
	startTime time.Time
}

// NewMachine validates def and builds its watchers in one pass
// ([machine.Definition.BuildWatchers]), provisions every watcher, and
// returns the machine ready to run. If a watcher cannot be provisioned, the
// watchers provisioned so far are closed and the error names it.
func NewMachine(def *machine.Definition, cfg MachineConfig) (*Machine, error) {
	built, err := def.BuildWatchers()
	if err != nil {
		return nil, err
	}
	if cfg.Data == nil {
		return nil, fmt.Errorf("machine %q: no data store", def.Name)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("machine", def.Name)
	facts := cfg.Facts
	if facts == nil {
		facts = BuiltinFacts
	}
	m := &Machine{
		def: def,
		dir: cfg.Dir,
		ref: machineRef{
			identity: cfg.Identity, id: watchers.InstanceID(cfg.Identity, def.Name),
			name: def.Name, version: def.Version,
		},
		fsm:      newFSM(def),
		notifier: &notifier{pub: cfg.Publisher, log: log},
		log:      log,
		onChange: cfg.OnChange,
	}
	for i, wd := range def.Watchers {
		info, _ := watchers.Lookup(wd.Type)
		w := built[i]
		wlog := log.With("watcher", wd.Name, "watcher_type", wd.Type)
		r := newRunner(m, wd, info, w, wlog)
		m.runners = append(m.runners, r)
		if p, ok := w.(watchers.Provisioner); ok {
			var sink watchers.MetricsSink
			if cfg.Metrics != nil {
				sink = cfg.Metrics(def.Name, wd.Name)
			}
			err := p.Provision(watchers.Deps{
				Machine: def.Name, Watcher: wd.Name, Dir: cfg.Dir, Identity: cfg.Identity,
				Log: wlog, Data: cfg.Data, Facts: facts, Conn: cfg.Conn, OnReconnect: cfg.OnReconnect, Host: cfg.Host,
				State: m.fsm.current, Interval: r.interval(), Metrics: sink,
				Report: func(state any) {
					m.publishState(context.Background(), stateReport{eventType: info.EventType(), watcherType: info.Type,
						watcher: wd.Name, outcome: watchers.Report.String(), state: state})
				},
			})
			if err != nil {
				m.closeWatchers()
				return nil, fmt.Errorf("machine %q: %s: provision: %w", def.Name, wd.Where(), err)
			}
		}
	}
	return m, nil
}

// Name returns the machine's name.
func (m *Machine) Name() string { return m.def.Name }

// Definition returns the machine's definition; callers must not modify it.
func (m *Machine) Definition() *machine.Definition { return m.def }

// State returns the machine's current state.
func (m *Machine) State() string { return m.fsm.current() }

// Run starts the watchers (after a random splay_start delay) and blocks
// until ctx is done, then waits for every watcher goroutine to exit and
// closes the watchers. A machine runs once: a second Run returns
// [ErrMachineStarted].
func (m *Machine) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return fmt.Errorf("run machine %q: %w", m.def.Name, ErrMachineStarted)
	}
	defer m.closeWatchers()
	if s := m.def.SplayStart; s > 0 {
		d := rand.N(time.Duration(s) * time.Second)
		m.log.Info("machine start splayed", "delay", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
	m.mu.Lock()
	m.startTime = time.Now()
	m.fsm.start(m.startTime)
	m.mu.Unlock()
	m.log.Info("machine started", "version", m.def.Version, "state", m.fsm.current(), "watchers", len(m.runners))
	var wg sync.WaitGroup
	for _, r := range m.runners {
		wg.Go(func() { r.run(ctx) })
	}
	wg.Wait()
	m.log.Info("machine stopped")
	return nil
}

// Transition fires the named transition now. It fails with
// [ErrUnknownTransition] or [ErrInvalidTransition] (naming the current and
// valid states) and changes nothing then. A transition to the current state
// is a real transition. Every transition publishes a transition event and
// pokes every watcher of the machine.
func (m *Machine) Transition(ctx context.Context, name string) error {
	_, _, err := m.transition(ctx, name, nil)
	return err
}

// Fire fires the named transition now, like [Machine.Transition], and
// returns the state it left and the state it entered; when it cannot
// fire, from is the state the machine is in.
func (m *Machine) Fire(ctx context.Context, name string) (from, to string, err error) {
	return m.transition(ctx, name, nil)
}

// transition fires name. announce, when set, runs first, under the same
// lock, with the error firing returns (nil when it fires): a watcher
// publishes its state event there, so that, as in Choria, the event of the
// check comes before the transition it causes and no other transition
// slips in between.
func (m *Machine) transition(ctx context.Context, name string, announce func(error)) (from, to string, err error) {
	m.fireMu.Lock()
	defer m.fireMu.Unlock()
	if announce != nil {
		err := m.fsm.canFire(name)
		if err != nil {
			err = fmt.Errorf("machine %q: %w", m.def.Name, err)
		}
		announce(err)
	}
	from, to, err = m.fsm.fire(name)
	if err != nil {
		return from, "", fmt.Errorf("machine %q: %w", m.def.Name, err)
	}
	if ev, err := transitionEvent(m.ref, name, from, to, time.Now()); err != nil {
		m.log.Error("build transition event", "error", err)
	} else {
		m.notifier.send(ctx, TransitionSubject, ev)
	}
	for _, r := range m.runners {
		r.notify()
	}
	m.changed()
	return from, to, nil
}

// changed calls the OnChange hook, if any.
func (m *Machine) changed() {
	if m.onChange != nil {
		m.onChange()
	}
}

// publishState publishes a watcher state event.
func (m *Machine) publishState(ctx context.Context, rep stateReport) {
	ev, err := stateEvent(m.ref, rep, time.Now())
	if err != nil {
		m.log.Error("build watcher state event", "watcher", rep.watcher, "error", err)
		return
	}
	m.notifier.send(ctx, WatcherStateSubject(rep.watcherType), ev)
}

// Status returns the machine's state and each watcher's last outcome.
func (m *Machine) Status() MachineStatus {
	m.mu.Lock()
	start := m.startTime
	m.mu.Unlock()
	st := MachineStatus{
		Name: m.def.Name, Version: m.def.Version, State: m.fsm.current(),
		Path: m.dir, ID: m.ref.id, StartTime: start,
		AvailableTransitions: m.fsm.available(),
		Entered:              m.fsm.enteredStates(),
	}
	for _, r := range m.runners {
		st.Watchers = append(st.Watchers, r.statusCopy())
	}
	return st
}

// closeWatchers closes every Closer watcher once.
func (m *Machine) closeWatchers() {
	m.closeOnce.Do(func() {
		for _, r := range m.runners {
			c, ok := r.w.(watchers.Closer)
			if !ok {
				continue
			}
			if err := closeSafely(c); err != nil {
				r.log.Warn("close watcher", "error", err)
			}
		}
	})
}

func closeSafely(c watchers.Closer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("close panicked: %v", p)
		}
	}()
	return c.Close()
}
