package beacon

import (
	"encoding/json"
	"fmt"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/machine"
)

// A machine whose definition depends on the node is registered with a
// factory instead: the agent calls it once at start with the node's
// settings (identity, directories, trusted keys, …). A plugin registers it
// from init:
//
//	func init() { agent.RegisterMachineFactory("beacon", forNode) }
//
// The factory must be pure (no I/O, no goroutines) and return a definition
// with the registered name; the agent validates what it returns.
func Example_factory() {
	forNode := func(n agent.Node) (*machine.Definition, error) {
		def, err := machine.Parse(machineYAML)
		if err != nil {
			return nil, err
		}
		for i, w := range def.Watchers {
			if w.Name != "pulse" {
				continue
			}
			props, err := json.Marshal(map[string]any{
				"message":       "beacon of " + n.Identity,
				"success_every": 10,
			})
			if err != nil {
				return nil, err
			}
			def.Watchers[i].Properties = props
		}
		return def, def.Validate()
	}

	def, err := forNode(agent.Node{Identity: "web1.example.net"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(def.Name, string(def.Watchers[0].Properties))
	// Output: beacon {"message":"beacon of web1.example.net","success_every":10}
}
