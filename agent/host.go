package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// DefaultScanInterval is how often the host rescans its machines directory
// when file-system notifications are missed.
const DefaultScanInterval = 10 * time.Second

// Host errors callers act on.
var (
	// ErrHostRunning is returned by a second [Host.Run].
	ErrHostRunning = errors.New("host already running")
	// ErrHostStopped is returned by requests to a host whose Run returned.
	ErrHostStopped = errors.New("host stopped")
	// ErrCompiledIn is returned when a directory machine or an unload
	// names a compiled-in machine.
	ErrCompiledIn = errors.New("compiled-in machine")
	// ErrUnknownMachine is returned for a machine the host does not run.
	ErrUnknownMachine = errors.New("unknown machine")
)

// HostConfig configures a [Host].
type HostConfig struct {
	// MachinesDir holds one directory per machine, <name>/machine.yaml.
	MachinesDir string
	// DataDir holds each machine's data, <name>/machine_data.json, and the
	// directories of compiled-in machines; it survives machine upgrades.
	DataDir string
	// Identity is the node identity carried in every event.
	Identity string
	// Facts returns the node's facts; nil serves [BuiltinFacts].
	Facts func() map[string]any
	// Publisher receives events; nil only logs them.
	Publisher Publisher
	// Log receives the host's and machines' logs; nil discards them.
	Log *slog.Logger
	// Conn is passed to watchers; nil when the node has no NATS.
	Conn *nats.Conn
	// OnReconnect is passed to watchers (see watchers.Deps.OnReconnect);
	// with natsbox use Client.Status.OnReconnect.
	OnReconnect func(f func()) (remove func())
	// Metrics, when set, returns the sink each watcher exports samples to
	// (watchers.Deps.Metrics), by machine and watcher name.
	Metrics func(machine, watcher string) watchers.MetricsSink
	// ScanInterval is the fallback rescan period; zero means
	// [DefaultScanInterval].
	ScanInterval time.Duration
	// NoNotify turns file-system notifications off: a machine put into
	// MachinesDir by hand is found at the next periodic scan (the manager
	// hands the machines it installs to the host directly). Each host
	// otherwise holds one inotify instance, of which Linux allows 128 per
	// user by default: a process running many hosts, or a node short of
	// instances, sets it.
	NoNotify bool
	// Machines are compiled-in machines to run besides those registered
	// with [RegisterMachine] or [RegisterMachineFactory].
	Machines []*machine.Definition
	// Node is handed to the factories of registered compiled-in machines.
	// Empty Identity, MachinesDir and DataDir are filled from this config.
	Node Node
	// OnChange, when set, is called after something [Host.States]
	// reports that a status document shows changed: a machine loaded,
	// unloaded or failed to load, a machine's state, a watcher's last
	// error (see MachineConfig.OnChange). A status writer rebuilds its
	// document on it instead of on every tick or event. It must not block.
	OnChange func()
}

// Host runs every machine under a directory plus the compiled-in ones. It
// loads added machines, reloads changed ones and stops removed ones as soon
// as file-system notifications report them (with a periodic rescan as a
// fallback). A new version of a machine is validated and built before the
// running one is stopped: an invalid update leaves the old version running
// and publishes a host event saying why.
type Host struct {
	cfg      HostConfig
	log      *slog.Logger
	notifier *notifier
	compiled map[string]*machine.Definition

	requests chan hostRequest
	running  atomic.Bool
	stopped  chan struct{}

	mu       sync.Mutex
	machines map[string]*hosted
}

var _ watchers.Host = (*Host)(nil)

// hosted is a running machine.
type hosted struct {
	m        *Machine
	cancel   context.CancelFunc
	done     chan struct{}
	compiled bool
	fp       fingerprint
}

type hostOp int

const (
	opLoad hostOp = iota
	opUnload
)

type hostRequest struct {
	op    hostOp
	name  string
	def   *machine.Definition // opLoad: parsed by the caller, or nil
	reply chan error
}

// NewHost checks cfg and returns a Host; call Run to start it.
func NewHost(cfg HostConfig) (*Host, error) {
	if cfg.MachinesDir == "" {
		return nil, errors.New("new host: MachinesDir is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("new host: DataDir is required")
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = DefaultScanInterval
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{
		cfg:      cfg,
		log:      log,
		notifier: &notifier{pub: cfg.Publisher, log: log},
		compiled: map[string]*machine.Definition{},
		requests: make(chan hostRequest),
		stopped:  make(chan struct{}),
		machines: map[string]*hosted{},
	}
	node := cfg.Node
	if node.Identity == "" {
		node.Identity = cfg.Identity
	}
	if node.MachinesDir == "" {
		node.MachinesDir = cfg.MachinesDir
	}
	if node.DataDir == "" {
		node.DataDir = cfg.DataDir
	}
	registered, err := BuildRegisteredMachines(node)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	for _, def := range append(registered, cfg.Machines...) {
		if err := def.Validate(); err != nil {
			return nil, fmt.Errorf("new host: compiled-in machine: %w", err)
		}
		if _, dup := h.compiled[def.Name]; dup {
			return nil, fmt.Errorf("new host: compiled-in machine %q given twice", def.Name)
		}
		h.compiled[def.Name] = def
	}
	return h, nil
}

// MachinesDir returns the directory machines are loaded from.
func (h *Host) MachinesDir() string { return h.cfg.MachinesDir }

// LoadMachine loads MachinesDir()/name now, or reloads it if its
// machine.yaml or directory changed since it was loaded (an unchanged
// running machine is left alone), and returns the load error, in which case
// the previously running version keeps running. It waits for a running
// Host. def, when it is a *machine.Definition parsed from the machine.yaml
// now on disk (its Digest matches), is used instead of parsing the file
// again; otherwise, or when nil, the file is read and parsed.
func (h *Host) LoadMachine(ctx context.Context, name string, def watchers.Definition) error {
	d, _ := def.(*machine.Definition)
	return h.request(ctx, hostRequest{op: opLoad, name: name, def: d})
}

// UnloadMachine stops the machine and waits for its watchers to exit. The
// host will not load it again from its directory until the directory
// changes. Unloading a machine that is not running is not an error;
// compiled-in machines cannot be unloaded.
func (h *Host) UnloadMachine(ctx context.Context, name string) error {
	return h.request(ctx, hostRequest{op: opUnload, name: name})
}

func (h *Host) request(ctx context.Context, req hostRequest) error {
	if err := spec.CheckName(req.name); err != nil {
		return fmt.Errorf("machine %w", err)
	}
	req.reply = make(chan error, 1)
	select {
	case h.requests <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-h.stopped:
		return ErrHostStopped
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Transition fires a transition of a running machine (see
// [Machine.Transition]).
func (h *Host) Transition(ctx context.Context, machine, transition string) error {
	_, _, err := h.Fire(ctx, machine, transition)
	return err
}

// Fire fires a transition of a running machine and returns the states it
// left and entered (see [Machine.Fire]); a machine the host does not run
// is [ErrUnknownMachine].
func (h *Host) Fire(ctx context.Context, machine, transition string) (from, to string, err error) {
	h.mu.Lock()
	hm := h.machines[machine]
	h.mu.Unlock()
	if hm == nil {
		return "", "", fmt.Errorf("%w %q", ErrUnknownMachine, machine)
	}
	return hm.m.Fire(ctx, transition)
}

// States returns the status of every running machine, sorted by name.
func (h *Host) States() []MachineStatus {
	h.mu.Lock()
	list := make([]*hosted, 0, len(h.machines))
	for _, hm := range h.machines {
		list = append(list, hm)
	}
	h.mu.Unlock()
	out := make([]MachineStatus, 0, len(list))
	for _, hm := range list {
		st := hm.m.Status()
		st.CompiledIn = hm.compiled
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b MachineStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// MachineState returns the state of the running machine name (see
// watchers.Host).
func (h *Host) MachineState(name string) (watchers.MachineState, bool) {
	h.mu.Lock()
	hm := h.machines[name]
	h.mu.Unlock()
	if hm == nil {
		return watchers.MachineState{}, false
	}
	st := hm.m.Status()
	return watchers.MachineState{Version: st.Version, State: st.State, Started: st.StartTime, Entered: st.Entered}, true
}

// Run starts the compiled-in machines and every machine under MachinesDir,
// follows changes until ctx is done, then stops every machine and waits for
// all of their goroutines before returning.
func (h *Host) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return ErrHostRunning
	}
	defer close(h.stopped)
	if err := os.MkdirAll(h.cfg.MachinesDir, 0o755); err != nil {
		return fmt.Errorf("run host: create machines directory: %w", err)
	}
	if err := os.MkdirAll(h.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("run host: create data directory: %w", err)
	}
	l := newHostLoop(h)
	defer l.stopAll()

	for _, name := range slices.Sorted(maps.Keys(h.compiled)) {
		l.startCompiled(ctx, h.compiled[name])
	}
	scanReq := make(chan struct{}, 1)
	if !h.cfg.NoNotify {
		if fw, err := l.watchFS(ctx, scanReq); err != nil {
			h.log.Warn("file-system notifications unavailable; relying on periodic scans", "dir", h.cfg.MachinesDir, "error", err)
		} else {
			defer fw.Close()
		}
	}
	l.scan(ctx)

	ticker := time.NewTicker(h.cfg.ScanInterval)
	defer ticker.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-scanReq:
			debounce.Reset(scanDebounce)
		case <-debounce.C:
			l.scan(ctx)
		case <-ticker.C:
			l.scan(ctx)
		case req := <-h.requests:
			switch req.op {
			case opLoad:
				req.reply <- l.load(ctx, req.name, true, req.def)
			case opUnload:
				req.reply <- l.unload(req.name)
			}
		}
	}
}

// scanDebounce lets a burst of file-system events settle into one scan.
const scanDebounce = 50 * time.Millisecond

// hostEvent logs and publishes a host event.
func (h *Host) hostEvent(ctx context.Context, name, version, path, outcome string, err error) {
	h.hostEventReplacing(ctx, name, version, "", path, outcome, err)
}

// hostEventReplacing publishes a host event about a version of name that
// replaced version previous.
func (h *Host) hostEventReplacing(ctx context.Context, name, version, previous, path, outcome string, err error) {
	ev, berr := hostEvent(h.cfg.Identity, name, version, previous, path, outcome, err, time.Now())
	if berr != nil {
		h.log.Error("build host event", "error", berr)
		return
	}
	h.notifier.send(ctx, WatcherStateSubject(HostWatcherType), ev)
	if h.cfg.OnChange != nil {
		h.cfg.OnChange()
	}
}
