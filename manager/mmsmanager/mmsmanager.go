// Package mmsmanager compiles the mms_manager machine into the agent: the
// machine that keeps a node's managed machines in the signed desired state.
// Its init registers a factory that builds the machine from the node's
// settings (agent.Node), so a binary includes the manager only when this
// package is listed in user_plugins.yaml; the watchers it uses (kv,
// machines) must be compiled in too. The reconcile logic itself is package
// manager.
package mmsmanager

import (
	_ "embed" // the manager machine's definition
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/watchers"
)

// The compiled-in manager machine.
const (
	// MachineName is the manager machine's name. A spec entry of this name
	// is refused (the machines watcher reserves the names of compiled-in
	// machines, see manager.ReconcilerConfig.Reserved).
	MachineName = "mms_manager"
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

// machinesProperties are the properties of the manager's machines watcher
// (see package manager/machineswatcher).
type machinesProperties struct {
	DataItem         string   `json:"data_item"`
	PurgeUnknown     bool     `json:"purge_unknown"`
	PublicKeys       []string `json:"public_keys,omitempty"`
	Threshold        int      `json:"threshold,omitempty"`
	AllowLegacySpec  bool     `json:"allow_legacy_spec,omitempty"`
	AllowHTTP        bool     `json:"allow_http,omitempty"`
	InsecureUnsigned bool     `json:"insecure_unsigned,omitempty"`
	StateDir         string   `json:"state_dir,omitempty"`
	MachinesDir      string   `json:"machines_dir,omitempty"`
	// VerifyInterval is omitted when zero (the watcher's default).
	VerifyInterval watchers.Duration `json:"verify_interval,omitzero"`
}

// MachineDefinition builds the manager machine for a node: the embedded
// machine.yaml with its watchers' properties filled from node, marshalled
// as JSON so no setting can change the machine's structure. The spec's
// trusted keys are node.TrustedKeys, or the compiled-in [manager.PublicKey] when
// the node configures none; with neither, and unsigned specs not allowed,
// it refuses with [manager.ErrNoTrustedKeys]. Machines the spec no longer selects
// are purged (only those the manager installed). Its state lives under
// node.StateDir/mms_manager (or, without a StateDir, in the machine's own
// directory under the agent's data dir).
func MachineDefinition(node agent.Node) (*machine.Definition, error) {
	keys := node.TrustedKeys
	if len(keys) == 0 {
		compiled, err := manager.CompiledKeys()
		if err != nil {
			return nil, err
		}
		keys = compiled
	}
	if len(keys) == 0 && !node.InsecureUnsigned {
		return nil, fmt.Errorf("%w: configure the keys that sign specs (or build them in with -ldflags \"-X github.com/mms-io/mms/manager.PublicKey=<hex>\"); accepting unsigned specs must be asked for explicitly", manager.ErrNoTrustedKeys)
	}
	def, err := machine.Parse(machineYAML)
	if err != nil {
		return nil, fmt.Errorf("manager machine definition: %w", err)
	}
	bucket, key := node.Bucket, node.Key
	if bucket == "" {
		bucket = DefaultBucket
	}
	if key == "" {
		key = DefaultKey
	}
	state := ""
	if node.StateDir != "" {
		state = filepath.Join(node.StateDir, MachineName)
	}
	props := map[string]any{
		"spec": kvProperties{Bucket: bucket, Key: key, Mode: "watch", StoreKey: DataItem},
		"machines": machinesProperties{
			DataItem:         DataItem,
			PurgeUnknown:     true,
			PublicKeys:       keys,
			Threshold:        node.Threshold,
			AllowLegacySpec:  node.AllowLegacySpec,
			AllowHTTP:        node.AllowHTTP,
			InsecureUnsigned: node.InsecureUnsigned,
			StateDir:         state,
			MachinesDir:      node.MachinesDir,
			VerifyInterval:   watchers.Duration(node.VerifyInterval),
		},
	}
	for i := range def.Watchers {
		w := &def.Watchers[i]
		p, ok := props[w.Name]
		if !ok {
			return nil, fmt.Errorf("manager machine definition: no properties for watcher %q", w.Name)
		}
		if w.Properties, err = json.Marshal(p); err != nil {
			return nil, fmt.Errorf("manager machine definition: watcher %q: %w", w.Name, err)
		}
		delete(props, w.Name)
	}
	if len(props) != 0 {
		return nil, fmt.Errorf("manager machine definition: %d watchers missing from machine.yaml", len(props))
	}
	return def, nil
}
