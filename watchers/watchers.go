// Package watchers is the contract between the agent's Runner and the watcher
// types, plus the registry that maps a type name ("exec", "kv", …) to a
// constructor. The leaf watcher types live in the packages below it
// (watchers/exec, watchers/kv, …); the machines and archive watchers, which
// drive the manager, live under manager/.
//
// A watcher does one unit of work per [Watcher.Check] call. It never owns a
// loop, a ticker or a goroutine of its own: the agent's Runner decides when to
// check (interval, state changes, stream triggers, [Result.After]), enforces
// the per-check timeout, recovers panics, backs off on errors, fires the
// success or fail transition and publishes the state event.
//
// The lifecycle of a watcher, in order:
//
//  1. [Info.New] returns a pointer to a zero config value. It has no side effects.
//  2. The watcher's properties are decoded into it as JSON with unknown fields
//     rejected (machine.yaml properties are converted from YAML first); a
//     string where a boolean or a whole number belongs is converted, as
//     Choria's decoder does, with a warning ([Decode]).
//  3. [Normalizer.Normalize], if implemented, rewrites what Choria accepts
//     but mms would not write into the canonical form, with a warning.
//  4. [Validator.Validate], if implemented, checks the decoded config. It is
//     pure and fast, so `mms machine validate` can run it without a node.
//  5. [Provisioner.Provision], if implemented, receives the [Deps]. It may
//     fail; it must not start goroutines.
//  6. The Runner calls Check (and [Streamer.Stream] in a goroutine it owns)
//     until the machine stops.
//  7. [Closer.Close], if implemented, runs once, even after a failed Provision.
//
// Each type lives in its own package and registers itself in init:
//
//	func init() {
//		watchers.Register(watchers.Info{Type: "file", Version: "v1", New: func() watchers.Watcher { return new(Watcher) }})
//	}
package watchers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Watcher observes or enforces one thing, once per call.
//
// Check must honour ctx (the Runner applies a timeout) and must not start
// goroutines or tickers. The Runner never calls Check concurrently with
// itself; state shared with a [Streamer] goroutine needs a lock.
//
// A non-nil error means the watcher could not do its job (a command that does
// not exist, a timeout, an unreachable server): the Runner fires the fail
// transition, publishes a state event carrying the error and backs off before
// the next periodic check. A check that ran and found a bad condition is not
// an error: return [Failure].
type Watcher interface {
	Check(ctx context.Context) (Result, error)
}

// Outcome says what a check found and so what the Runner does with it.
type Outcome int

const (
	// Unchanged: nothing new. No transition, no event.
	Unchanged Outcome = iota
	// Report: publish a state event but fire no transition.
	Report
	// Success: fire the success transition (if any) and publish a state event.
	Success
	// Failure: fire the fail transition (if any) and publish a state event.
	Failure
)

var outcomeNames = [...]string{"unchanged", "report", "success", "failure"}

// String returns the lowercase name of o.
func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("outcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// Result is what one check found.
type Result struct {
	// Outcome selects the transition and whether an event is published.
	Outcome Outcome
	// State holds the type-specific fields of the state event (for example
	// the exec watcher's command and previous_outcome). It must marshal to a
	// JSON object. The Runner keeps the last State for announces, so it
	// must be a value, not a pointer into the watcher's mutable state.
	State any
	// After, when positive, schedules the next check after this long
	// instead of after the watcher's interval (a timer's expiry, the next
	// edge of a schedule).
	After time.Duration
	// Transition, when not empty, is the transition the Runner fires in
	// place of the one the Outcome selects (success_transition for
	// Success, fail_transition for Failure, none for Report). The nagios
	// watcher fires OK, WARNING, CRITICAL or UNKNOWN this way. With
	// Unchanged nothing fires.
	Transition string
	// Quiet fires the transition but publishes no state event (Choria's
	// suppress_success_announce); State is still what announce_interval
	// republishes. An error is always published.
	Quiet bool
}

// Validator is implemented by watchers whose config needs checking beyond
// strict decoding. Validate must be pure: no I/O, no clock, no network.
type Validator interface {
	Validate() error
}

// Provisioner is implemented by watchers that need the machine's
// dependencies. Provision must not start goroutines.
type Provisioner interface {
	Provision(d Deps) error
}

// Streamer is implemented by event-driven watchers (a KV watch, fsnotify).
// The Runner runs Stream in a goroutine it owns while the machine runs.
// Stream blocks until ctx is done and calls trigger to request a check; it
// returns nil when ctx is done, or an error after which the Runner restarts
// it with backoff.
type Streamer interface {
	Stream(ctx context.Context, trigger func()) error
}

// StateObserver is implemented by watchers that react to the machine's state
// itself rather than to the world, such as a timer that starts when its
// state is entered. The Runner calls StateChanged after every transition of
// the machine, with active reporting whether the new state is one the
// watcher runs in. It is never called concurrently with Check.
type StateObserver interface {
	StateChanged(active bool)
}

// StateExtender is implemented by watchers that also run in states their
// state_match does not list. The nagios watcher runs in Choria's
// FORCE_CHECK state, which Choria's own check machines leave out of
// state_match. The Runner asks once, before the first check; a watcher
// without a state_match runs in every state anyway.
type StateExtender interface {
	ExtraStates() []string
}

// Closer is implemented by watchers that hold resources. Close is called
// once when the machine stops, even if Provision failed.
type Closer interface {
	Close() error
}

// Deps are what a watcher may use of its machine and its node. Fields a
// watcher does not need it ignores; tests fill only what they exercise.
type Deps struct {
	// Machine is the name of the machine the watcher belongs to.
	Machine string
	// Watcher is the watcher's own name in machine.yaml.
	Watcher string
	// Dir is the machine's directory (where machine.yaml and its scripts
	// live). Relative paths in properties resolve against it.
	Dir string
	// Identity is the node identity.
	Identity string
	// Log is already scoped with the machine and watcher names.
	Log *slog.Logger
	// Data is the machine's persistent data store.
	Data DataStore
	// Facts returns the node's facts (the facts file merged with built-ins).
	Facts func() map[string]any
	// Conn is the node's NATS connection, nil when the machine runs without
	// one (for example under `mms machine run`).
	Conn *nats.Conn
	// OnReconnect registers f to run after the NATS connection reconnects
	// (and after a first connection made in the background); the returned
	// func unregisters it. f runs off the NATS callback goroutine, may make
	// NATS requests, must not block for long, and must be idempotent. Nil
	// when the machine has no connection.
	OnReconnect func(f func()) (remove func())
	// Host lets a watcher load and unload machines on this node (the
	// machines and archive watchers install machines). Nil when not hosted.
	Host Host
	// State returns the machine's current state. Nil outside a machine.
	State func() string
	// Interval is how often the Runner checks the watcher when nothing
	// else asks for a check: machine.yaml's interval, else the type's
	// DefaultInterval; zero means never periodically.
	Interval time.Duration
	// Metrics receives the samples the watcher exports for the node's
	// Prometheus endpoint. Nil when the node exports none.
	Metrics MetricsSink
	// Report publishes a state event of this watcher now, with state as
	// its type-specific fields and outcome "report", firing no transition:
	// for progress of long work inside a check (a download). It must not
	// be called often (pace it to seconds). Nil when the machine has no
	// runner to publish for it.
	Report func(state any)
}

// Host is the part of the agent's machine host a watcher may drive.
type Host interface {
	// MachinesDir is the directory the host loads machines from.
	MachinesDir() string
	// LoadMachine loads, or reloads, the machine in MachinesDir()/name now
	// and starts it. It returns the load or validation error, in which case
	// any previously running version of the machine keeps running. def,
	// when not nil, is that directory's machine.yaml as the caller already
	// parsed and validated it (installers check a machine before they swap
	// it in): the host uses it instead of parsing the file again when its
	// Digest is that of the file on disk.
	LoadMachine(ctx context.Context, name string, def Definition) error
	// UnloadMachine stops the machine and waits for its watchers to exit.
	// Unloading a machine that is not running is not an error.
	UnloadMachine(ctx context.Context, name string) error
	// MachineState returns the state of the running machine name, and
	// false when it does not run.
	MachineState(name string) (MachineState, bool)
}

// MachineState is what a host tells of a running machine: its version,
// its state and the states it went through since it started, which is
// what a health gate reads.
type MachineState struct {
	Version string
	State   string
	// Started is when its watchers started (zero while it splays).
	Started time.Time
	// Entered is when each state was first entered since Started.
	Entered map[string]time.Time
}

// Definition is a parsed machine.yaml, a *machine.Definition, handed to
// [Host.LoadMachine]. (Package machine uses this package's registry to
// validate watchers, so this package names the type by what the host
// checks: the sha256 of the bytes it was parsed from.)
type Definition interface {
	Digest() [32]byte
}

// DataStore is a machine's persistent key/value data. Writes are persisted
// atomically before they return. It is safe for concurrent use.
type DataStore interface {
	// Get returns the value stored under key.
	Get(key string) (any, bool)
	// Put stores value (anything JSON-encodable) under key.
	Put(key string, value any) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(key string) error
	// All returns a copy of every key and value.
	All() map[string]any
}
