package mmsmanager_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/machineswatcher"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/packer"
	_ "github.com/mms-io/mms/watchers/kv"
)

const (
	keyA = "64031219d4922eed63a5f567303e98607c632139c01bc9fa4ca2514c2d9d30da"
	keyB = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

// properties returns the named watcher's properties as a map.
func properties(t *testing.T, def *machine.Definition, watcher string) map[string]any {
	t.Helper()
	for _, w := range def.Watchers {
		if w.Name == watcher {
			var m map[string]any
			if err := json.Unmarshal(w.Properties, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no watcher %q", watcher)
	return nil
}

// trustOf resolves c for a test.
func trustOf(t *testing.T, c manager.TrustConfig) manager.Trust {
	t.Helper()
	trust, err := manager.NewTrust(c)
	if err != nil {
		t.Fatal(err)
	}
	return trust
}

// hexKey parses a hex public key for a test.
func hexKey(t *testing.T, h string) ed25519.PublicKey {
	t.Helper()
	k, err := packer.ParsePublicKey(h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// machinesWatcher builds the manager's machines watcher as the runtime
// does and returns its configuration.
func machinesWatcher(t *testing.T, def *machine.Definition) *machineswatcher.Watcher {
	t.Helper()
	built, err := def.BuildWatchers()
	if err != nil {
		t.Fatalf("BuildWatchers() = %v", err)
	}
	for i, w := range def.Watchers {
		if w.Name == "machines" {
			return built[i].(*machineswatcher.Watcher)
		}
	}
	t.Fatal("no machines watcher")
	return nil
}

func TestMachineDefinition(t *testing.T) {
	trust := trustOf(t, manager.TrustConfig{Keys: []ed25519.PublicKey{hexKey(t, keyA), hexKey(t, keyB)}, Threshold: 2, AllowV1: true})
	node := agent.WithSetting(agent.Node{
		Identity: "node1", MachinesDir: "/etc/mms/machines", DataDir: "/var/lib/mms/data", StateDir: "/var/lib/mms/state",
	}, manager.Settings{Trust: trust, AllowHTTP: true, Bucket: "FLEET", Key: "prod", VerifyInterval: 10 * time.Minute})
	def, err := mmsmanager.MachineDefinition(node)
	if err != nil {
		t.Fatal(err)
	}
	if def.Name != mmsmanager.MachineName || def.InitialState != "MANAGE" {
		t.Errorf("definition %q starts in %q, want %q in MANAGE", def.Name, def.InitialState, mmsmanager.MachineName)
	}
	if diff := cmp.Diff([]string{"MANAGE", "MAINTENANCE"}, def.States()); diff != "" {
		t.Errorf("States() (-want +got):\n%s", diff)
	}
	spec := def.Watchers[0]
	if spec.Type != "kv" || spec.SuccessTransition != "spec_changed" || !slices.Equal(spec.StateMatch, []string{"MANAGE"}) {
		t.Errorf("kv watcher = %+v, want type kv poking spec_changed in MANAGE", spec)
	}
	for _, tr := range def.Transitions {
		if tr.Name == "spec_changed" && (!slices.Equal(tr.From, []string{"MANAGE"}) || tr.Destination != "MANAGE") {
			t.Errorf("spec_changed = %+v, want the self-transition MANAGE → MANAGE", tr)
		}
	}
	wantKV := map[string]any{"bucket": "FLEET", "key": "prod", "mode": "watch", "bucket_prefix": false, "store_key": mmsmanager.DataItem}
	if diff := cmp.Diff(wantKV, properties(t, def, "spec")); diff != "" {
		t.Errorf("kv properties (-want +got):\n%s", diff)
	}

	// The machines watcher is built in Go: the trust arrives as the typed
	// value the command line resolved, not as text.
	w := machinesWatcher(t, def)
	if w.DataItem != mmsmanager.DataItem || !w.PurgeUnknown || !w.AllowHTTP || w.StateDir != "/var/lib/mms/state/mms_manager" ||
		w.MachinesDir != "/etc/mms/machines" || w.VerifyInterval.Std() != 10*time.Minute {
		t.Errorf("machines watcher = %+v, want the node's settings", w)
	}
	if w.Trust == nil || !slices.Equal(w.Trust.KeyIDs(), trust.KeyIDs()) || w.Trust.Threshold() != 2 || !w.Trust.AllowV1() {
		t.Errorf("machines watcher trust = %+v, want the settings' trust", w.Trust)
	}
	if len(def.Watchers[1].Properties) != 0 {
		t.Errorf("machines watcher properties = %s, want none (built in Go)", def.Watchers[1].Properties)
	}
	if !slices.Contains(agent.RegisteredMachines(), mmsmanager.MachineName) {
		t.Errorf("RegisteredMachines() = %v, want %q among them", agent.RegisteredMachines(), mmsmanager.MachineName)
	}
}

func TestMachineDefinitionTrust(t *testing.T) {
	tests := []struct {
		name     string
		settings *manager.TrustConfig
		compiled string
		wantKeys []string
		insecure bool
		wantErr  string
	}{
		{name: "node keys", settings: &manager.TrustConfig{Keys: []ed25519.PublicKey{hexKeyOf(keyA)}}, wantKeys: []string{keyA}},
		{name: "node keys replace compiled-in ones", settings: &manager.TrustConfig{Keys: []ed25519.PublicKey{hexKeyOf(keyA)}}, compiled: keyB, wantKeys: []string{keyA}},
		{name: "compiled-in keys without settings", compiled: keyA + ", " + strings.ToUpper(keyB), wantKeys: []string{keyA, keyB}},
		{name: "no keys", wantErr: "no trusted spec-signing keys"},
		{name: "insecure without keys", settings: &manager.TrustConfig{Unsigned: true}, insecure: true},
		{name: "bad compiled-in key", compiled: keyA + ",abc", wantErr: "compiled-in public key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := manager.PublicKey
			manager.PublicKey = tt.compiled
			t.Cleanup(func() { manager.PublicKey = old })
			var node agent.Node
			if tt.settings != nil {
				node = agent.WithSetting(node, manager.Settings{Trust: trustOf(t, *tt.settings)})
			}
			def, err := mmsmanager.MachineDefinition(node)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("MachineDefinition() = %v, want error containing %q", err, tt.wantErr)
				}
				if tt.wantErr == "no trusted spec-signing keys" && !errors.Is(err, manager.ErrNoTrustedKeys) {
					t.Errorf("MachineDefinition() = %v, want ErrNoTrustedKeys", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := machinesWatcher(t, def)
			var got []string
			for _, k := range w.Trust.Keys() {
				got = append(got, packer.FormatPublicKey(k))
			}
			if diff := cmp.Diff(tt.wantKeys, got); diff != "" {
				t.Errorf("trusted keys (-want +got):\n%s", diff)
			}
			if w.Trust.Unsigned() != tt.insecure {
				t.Errorf("unsigned = %v, want %v", w.Trust.Unsigned(), tt.insecure)
			}
		})
	}
}

// hexKeyOf parses a constant hex key (table rows have no t).
func hexKeyOf(h string) ed25519.PublicKey {
	k, err := packer.ParsePublicKey(h)
	if err != nil {
		panic(err)
	}
	return k
}

// TestMachineDefinitionNoInjection checks that node settings land in the
// properties verbatim and cannot add watchers or transitions (Choria W4).
func TestMachineDefinitionNoInjection(t *testing.T) {
	evil := "B\"\n  - name: evil\n    type: exec\n    properties: {command: /bin/sh}\n"
	node := agent.WithSetting(agent.Node{}, manager.Settings{Trust: trustOf(t, manager.TrustConfig{Keys: []ed25519.PublicKey{hexKey(t, keyA)}}), Bucket: evil, Key: "{{lookup \"facts.x\"}}"})
	def, err := mmsmanager.MachineDefinition(node)
	if err != nil {
		t.Fatal(err)
	}
	if len(def.Watchers) != 2 || len(def.Transitions) != 3 {
		t.Fatalf("definition has %d watchers and %d transitions, want 2 and 3", len(def.Watchers), len(def.Transitions))
	}
	props := properties(t, def, "spec")
	if props["bucket"] != evil || props["key"] != "{{lookup \"facts.x\"}}" {
		t.Errorf("kv properties = %v, want the settings verbatim", props)
	}
}
