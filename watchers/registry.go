package watchers

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sync"
)

// Info describes a watcher type to the registry.
type Info struct {
	// Type is the name used in machine.yaml and in the CloudEvent type
	// io.choria.machine.watcher.<Type>.<Version>.state. It must match
	// ^[a-z][a-z0-9_]*$ and be unique.
	Type string
	// Version is the event protocol version, "v1" for every built-in type.
	Version string
	// New returns a pointer to a zero config value. It must have no side
	// effects.
	New func() Watcher
	// DefaultInterval is used when machine.yaml gives no interval; zero means
	// the watcher runs only on state changes, stream triggers and
	// Result.After.
	DefaultInterval Duration
	// MinInterval, when set, is the smallest interval machine.yaml may give.
	MinInterval Duration
	// Timeout is the Runner's deadline for one Check; zero means one minute.
	// Watchers that download or run long commands raise it.
	Timeout Duration
	// Describe, when set, says in a few words why a state event of this
	// type happened ("exit 2: connection refused"), from the event's data:
	// the JSON object of the type's state fields and the common ones
	// (outcome, error, …). It returns "" when it has nothing to add. Without
	// it, readers show the data's "reason" field, if any. The data comes
	// from the network: Describe must take any bytes without panicking;
	// readers make its text inert for a terminal.
	Describe func(data []byte) string
}

// EventType returns the CloudEvent type of this watcher's state events.
func (i Info) EventType() string {
	return "io.choria.machine.watcher." + i.Type + "." + i.Version + ".state"
}

var typePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// registry is the process-wide set of watcher types. Like database/sql's
// drivers, it is filled from init functions and read afterwards; this is the
// one piece of package-level state in the package.
var registry = struct {
	sync.RWMutex
	types map[string]Info
}{types: map[string]Info{}}

// Register makes a watcher type available. It is meant to be called from
// init; it panics if the type name is invalid, New is nil, or the type is
// already registered.
func Register(i Info) {
	if !typePattern.MatchString(i.Type) {
		panic(fmt.Sprintf("watchers: invalid watcher type %q: must match %s", i.Type, typePattern))
	}
	if i.New == nil {
		panic(fmt.Sprintf("watchers: watcher type %q registered with a nil New", i.Type))
	}
	if i.Version == "" {
		i.Version = "v1"
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.types[i.Type]; dup {
		panic(fmt.Sprintf("watchers: watcher type %q registered twice", i.Type))
	}
	registry.types[i.Type] = i
}

// Lookup returns the registered type named typ.
func Lookup(typ string) (Info, bool) {
	registry.RLock()
	defer registry.RUnlock()
	i, ok := registry.types[typ]
	return i, ok
}

// Types returns every registered type, sorted by name.
func Types() []Info {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]Info, 0, len(registry.types))
	for _, k := range slices.Sorted(maps.Keys(registry.types)) {
		out = append(out, registry.types[k])
	}
	return out
}

// ErrUnknownType is returned by [Build] for a type nobody registered.
var ErrUnknownType = errors.New("unknown watcher type")

// refused are Choria's watcher types that mms does not have, each with why
// and what to use instead. A binary that registers one of these names (a
// plugin of that type in user_plugins.yaml) runs it like any other type.
var refused = map[string]string{
	"plugins": "it installs machines from a signed list (with its plugins_manager machine); " +
		"in mms the compiled-in manager machine does that with its machines and archive watchers: sign the list with `mms pack` and store it with `mms put`",
	"homekit": "Choria removed it too (go-choria#2288): switch the device from an exec watcher",
	"httpswitch": "mms serves no per-machine HTTP endpoint to switch a machine: put the switch in a NATS key-value bucket " +
		"(`nats kv put`) and follow it with a kv watcher, or flip a file and use a file watcher",
	"ccm_manifest": "mms runs no configuration-management manifests: run your configuration tool from an exec watcher",
}

// Refused returns Choria's watcher types that mms refuses, each with why
// and what to use instead.
func Refused() map[string]string { return maps.Clone(refused) }

// UnknownType returns the error for a watcher type that is not registered:
// it wraps [ErrUnknownType] and, for one of Choria's types mms refuses,
// says why and what to use instead.
func UnknownType(typ string) error {
	if why, ok := refused[typ]; ok {
		return fmt.Errorf("%w %q: Choria's %s watcher is not supported: %s", ErrUnknownType, typ, typ, why)
	}
	return fmt.Errorf("%w %q", ErrUnknownType, typ)
}

// Build creates a watcher of type typ from its JSON properties: [Decode]
// (strict decoding, unknown fields are errors, after Choria's weak typing
// and the type's Normalize), then Validate. It does not provision. Empty or
// null properties decode as an empty object. [Decode] returns the warnings
// Build leaves out.
func Build(typ string, properties json.RawMessage) (Watcher, error) {
	w, _, err := Decode(typ, properties)
	if err != nil {
		return nil, err
	}
	if v, ok := w.(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("properties: %w", err)
		}
	}
	return w, nil
}
