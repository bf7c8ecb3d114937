package agent

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// compiled holds the machines compiled into the binary. Like the watcher
// registry it is filled from init functions and read afterwards; it is the
// one piece of package-level state in this package.
var compiled = struct {
	sync.RWMutex
	defs map[string]*Definition
}{defs: map[string]*Definition{}}

// RegisterMachine adds a compiled-in machine that every [Host] runs (with
// its directory and data under HostConfig.DataDir/<name>). It is meant to
// be called from init with a definition from [MustParseDefinition]; it
// panics if the definition is invalid or the name is already registered.
func RegisterMachine(def *Definition) {
	if def == nil {
		panic("agent: RegisterMachine with a nil definition")
	}
	if err := def.Validate(); err != nil {
		panic(fmt.Sprintf("agent: RegisterMachine: %v", err))
	}
	compiled.Lock()
	defer compiled.Unlock()
	if _, dup := compiled.defs[def.Name]; dup {
		panic(fmt.Sprintf("agent: compiled-in machine %q registered twice", def.Name))
	}
	compiled.defs[def.Name] = def
}

// RegisteredMachines returns the compiled-in machines, sorted by name.
func RegisteredMachines() []*Definition {
	compiled.RLock()
	defer compiled.RUnlock()
	out := make([]*Definition, 0, len(compiled.defs))
	for _, k := range slices.Sorted(maps.Keys(compiled.defs)) {
		out = append(out, compiled.defs[k])
	}
	return out
}
