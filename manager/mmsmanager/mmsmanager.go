// Package mmsmanager compiles the mms_manager machine into the agent: the
// machine that keeps a node's managed machines in the signed desired state.
// Its init registers a factory that builds the machine from the node
// (agent.Node) and the manager.Settings attached to it, so a binary
// includes the manager only when this package is listed in
// user_plugins.yaml; the watchers it uses (kv, machines) must be compiled
// in too. The reconcile logic itself is package
// manager.
package mmsmanager

import (
	"cmp"
	_ "embed" // the manager machine's definition
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/machineswatcher"
	"github.com/mms-io/mms/watchers"
)

// The compiled-in manager machine.
const (
	// MachineName is the manager machine's name. A spec entry of this name
	// is refused (the machines watcher reserves the names of compiled-in
	// machines, see manager.ReconcilerConfig.Reserved).
	MachineName = manager.MachineName
	// DataItem is the data key the manager's kv watcher stores the spec
	// envelope under and its machines watcher reads.
	DataItem = "spec"
	// DefaultBucket and DefaultKey name the KV entry holding the spec
	// when the node does not (the defaults of `mms put`).
	DefaultBucket = "MACHINES"
	DefaultKey    = "machines"
)

//go:embed machine.yaml
var machineYAML []byte

func init() {
	agent.RegisterMachineFactory(MachineName, MachineDefinition)
}

// kvProperties are the properties of the manager's kv watcher.
type kvProperties struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Mode   string `json:"mode"`
	// BucketPrefix is always written: Choria's default is true.
	BucketPrefix bool   `json:"bucket_prefix"`
	StoreKey     string `json:"store_key"`
}

// MachineDefinition builds the manager machine for a node: the embedded
// machine.yaml with its kv watcher's properties filled from the node's
// [manager.Settings] (attached by the agent's command line with
// agent.WithSetting; without them, the defaults and the compiled-in keys),
// marshalled as JSON so no setting can change the machine's structure, and
// its machines watcher built in Go with the node's trust as a typed value.
// The trust is the settings' (resolved once by manager.NewTrust), or the
// compiled-in [manager.PublicKey] when the settings carry none; with
// neither, it refuses with [manager.ErrNoTrustedKeys]. Machines the spec no
// longer selects are purged (only those the manager installed). Its state
// lives under node.StateDir/mms_manager (or, without a StateDir, in the
// machine's own directory under the agent's data dir).
func MachineDefinition(node agent.Node) (*machine.Definition, error) {
	settings, _ := agent.Setting[manager.Settings](node)
	trust := settings.Trust
	if trust.IsZero() {
		var err error
		if trust, err = manager.NewTrust(manager.TrustConfig{}); err != nil {
			return nil, err
		}
	}
	def, err := machine.Parse(machineYAML)
	if err != nil {
		return nil, fmt.Errorf("manager machine definition: %w", err)
	}
	bucket := cmp.Or(settings.Bucket, DefaultBucket)
	key := cmp.Or(settings.Key, DefaultKey)
	state := ""
	if node.StateDir != "" {
		state = filepath.Join(node.StateDir, MachineName)
	}
	kv, err := json.Marshal(kvProperties{Bucket: bucket, Key: key, Mode: "watch", StoreKey: DataItem})
	if err != nil {
		return nil, fmt.Errorf("manager machine definition: %w", err)
	}
	machines := func() watchers.Watcher {
		return &machineswatcher.Watcher{
			DataItem:     DataItem,
			PurgeUnknown: true,
			Trust:        &trust,
			AllowHTTP:    settings.AllowHTTP,
			// The settings are mms agent's flags: refusals name them.
			Fixes:          manager.Fixes{AllowLegacySpec: "mms agent --allow-legacy-spec", AllowHTTP: "mms agent --allow-http"},
			StateDir:       state,
			MachinesDir:    node.MachinesDir,
			VerifyInterval: watchers.Duration(settings.VerifyInterval),
			Status:         settings.Status,
			Fleet:          settings.Fleet,
			// Only the node's own configuration resets its spec history.
			ResetSpecHistory: settings.ResetSpecHistory,
		}
	}
	filled := 0
	for i := range def.Watchers {
		switch w := &def.Watchers[i]; w.Name {
		case "spec":
			w.Properties, filled = kv, filled+1
		case "machines":
			w.New, filled = machines, filled+1
		default:
			return nil, fmt.Errorf("manager machine definition: no settings for watcher %q", w.Name)
		}
	}
	if filled != 2 {
		return nil, fmt.Errorf("manager machine definition: %d of its 2 watchers in machine.yaml", filled)
	}
	return def, nil
}
