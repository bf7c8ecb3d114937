package agent

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/spec"
)

// Node is what a compiled-in machine may know about the node that runs it:
// its identity and directories, plus typed settings the binary's main
// attaches for its plugins ([WithSetting], [Setting]). A [MachineFactory]
// turns them into a definition. The runtime knows nothing of what those
// settings mean (the manager's trust, for one, is a manager.Settings).
type Node struct {
	// Identity is the node identity.
	Identity string
	// MachinesDir is where managed machines are installed.
	MachinesDir string
	// DataDir holds machine data and compiled-in machines' directories.
	DataDir string
	// StateDir is the agent's state directory; a compiled-in machine keeps
	// private state under StateDir/<machine name>.
	StateDir string

	settings map[reflect.Type]any
}

// WithSetting returns a copy of n that carries v as its setting of type T,
// replacing any earlier one. A composition root (cmd/mms's `mms agent`)
// attaches each plugin's settings this way, and the plugin's factory reads
// them with [Setting], so typed values reach compiled-in machines without
// this package depending on their packages.
func WithSetting[T any](n Node, v T) Node {
	m := make(map[reflect.Type]any, len(n.settings)+1)
	maps.Copy(m, n.settings)
	m[reflect.TypeFor[T]()] = v
	n.settings = m
	return n
}

// Setting returns n's setting of type T, and whether it has one.
func Setting[T any](n Node) (T, bool) {
	v, ok := n.settings[reflect.TypeFor[T]()].(T)
	return v, ok
}

// MachineFactory builds a compiled-in machine for a node. It must be pure:
// no I/O, no goroutines.
type MachineFactory func(Node) (*machine.Definition, error)

// compiled holds the machines compiled into the binary. Like the watcher
// registry it is filled from init functions and read afterwards; it is the
// one piece of package-level state in this package.
var compiled = struct {
	sync.RWMutex
	factories map[string]MachineFactory
}{factories: map[string]MachineFactory{}}

// RegisterMachine adds a compiled-in machine with a fixed definition that
// every [Host] runs (with its directory and data under
// HostConfig.DataDir/<name>). It is meant to be called from init with a
// definition from [machine.MustParse]; it panics if the definition is
// invalid or the name is already registered.
func RegisterMachine(def *machine.Definition) {
	if def == nil {
		panic("agent: RegisterMachine with a nil definition")
	}
	if err := def.Validate(); err != nil {
		panic(fmt.Sprintf("agent: RegisterMachine: %v", err))
	}
	RegisterMachineFactory(def.Name, func(Node) (*machine.Definition, error) { return def, nil })
}

// RegisterMachineFactory adds a compiled-in machine whose definition depends
// on the node's settings; the Host calls f once at start. It is meant to be
// called from init; it panics if name is invalid or already registered, or
// f is nil. The definition f returns must be named name.
func RegisterMachineFactory(name string, f MachineFactory) {
	if err := spec.CheckName(name); err != nil {
		panic(fmt.Sprintf("agent: compiled-in machine name %q: %v", name, err))
	}
	if f == nil {
		panic(fmt.Sprintf("agent: compiled-in machine %q registered with a nil factory", name))
	}
	compiled.Lock()
	defer compiled.Unlock()
	if _, dup := compiled.factories[name]; dup {
		panic(fmt.Sprintf("agent: compiled-in machine %q registered twice", name))
	}
	compiled.factories[name] = f
}

// RegisteredMachines returns the names of the compiled-in machines, sorted.
func RegisteredMachines() []string {
	compiled.RLock()
	defer compiled.RUnlock()
	return slices.Sorted(maps.Keys(compiled.factories))
}

// BuildRegisteredMachines builds every compiled-in machine for node, sorted
// by name, and validates each.
func BuildRegisteredMachines(node Node) ([]*machine.Definition, error) {
	compiled.RLock()
	factories := maps.Clone(compiled.factories)
	compiled.RUnlock()
	return buildMachines(factories, node)
}

// buildMachines runs each factory for node, in name order.
func buildMachines(factories map[string]MachineFactory, node Node) ([]*machine.Definition, error) {
	var out []*machine.Definition
	for _, name := range slices.Sorted(maps.Keys(factories)) {
		def, err := factories[name](node)
		if err != nil {
			return nil, fmt.Errorf("compiled-in machine %q: %w", name, err)
		}
		if def == nil || def.Name != name {
			return nil, fmt.Errorf("compiled-in machine %q: factory returned a definition named otherwise", name)
		}
		if err := def.Validate(); err != nil {
			return nil, fmt.Errorf("compiled-in machine %q: %w", name, err)
		}
		out = append(out, def)
	}
	return out, nil
}
