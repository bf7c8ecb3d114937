// Package beacon is an example compiled-in machine: the "beacon" machine,
// built from the machine.yaml embedded next to this file, which uses the
// example heartbeat watcher and the built-in timer watcher.
//
// A compiled-in machine runs on every node whose mms binary includes it,
// from the moment the agent starts, and cannot be replaced or removed
// through the fleet's spec: use one to bootstrap nodes from a source you
// trust (Choria calls this pattern "metamgr").
//
// Compile it into mms by listing it in user_plugins.yaml next to the
// heartbeat watcher and running `go generate ./plugins`:
//
//	heartbeat: example.com/mms-heartbeat
//	beacon: example.com/mms-heartbeat/beacon
package beacon

import (
	_ "embed"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/machine"

	// The watcher types machine.yaml uses must be registered before init
	// below parses it; importing their packages guarantees that.
	_ "example.com/mms-heartbeat"
	_ "github.com/mms-io/mms/watchers/timer"
)

// Name is the machine's name.
const Name = "beacon"

// machineYAML is the machine's definition, compiled into the binary.
//
//go:embed machine.yaml
var machineYAML []byte

func init() {
	// machine.MustParse validates strictly (unknown keys, states,
	// transitions, watcher types and properties) and panics on a bad
	// definition, so a broken machine fails the package's tests and the
	// binary's start, never a node later.
	agent.RegisterMachine(machine.MustParse(machineYAML))
}
