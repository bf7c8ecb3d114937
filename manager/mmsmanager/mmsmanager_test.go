package mmsmanager_test

import (
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
	_ "github.com/mms-io/mms/manager/machineswatcher"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/watchers"
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

func TestMachineDefinition(t *testing.T) {
	node := agent.Node{
		Identity: "node1", MachinesDir: "/etc/mms/machines", DataDir: "/var/lib/mms/data", StateDir: "/var/lib/mms/state",
		TrustedKeys: []string{keyA, keyB}, Threshold: 2, AllowLegacySpec: true, AllowHTTP: true,
		Bucket: "FLEET", Key: "prod", VerifyInterval: 10 * time.Minute,
	}
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
	wantMachines := map[string]any{
		"data_item": mmsmanager.DataItem, "purge_unknown": true, "public_keys": []any{keyA, keyB}, "threshold": 2.0,
		"allow_legacy_spec": true, "allow_http": true, "state_dir": "/var/lib/mms/state/mms_manager", "machines_dir": "/etc/mms/machines",
		"verify_interval": "10m0s",
	}
	if diff := cmp.Diff(wantMachines, properties(t, def, "machines")); diff != "" {
		t.Errorf("machines properties (-want +got):\n%s", diff)
	}

	// Everything but the kv watcher (another package, not in this build)
	// validates, the machines watcher's properties included.
	noKV := *def
	noKV.Watchers = slices.DeleteFunc(slices.Clone(def.Watchers), func(w machine.WatcherDef) bool { return w.Type == "kv" })
	if err := noKV.Validate(); err != nil {
		t.Errorf("Validate() without the kv watcher = %v", err)
	}
	if _, ok := watchers.Lookup("kv"); !ok {
		if err := def.Validate(); !errors.Is(err, watchers.ErrUnknownType) {
			t.Errorf("Validate() = %v, want only the kv type missing", err)
		}
	}
	if !slices.Contains(agent.RegisteredMachines(), mmsmanager.MachineName) {
		t.Errorf("RegisteredMachines() = %v, want %q among them", agent.RegisteredMachines(), mmsmanager.MachineName)
	}
}

func TestMachineDefinitionTrust(t *testing.T) {
	tests := []struct {
		name     string
		node     agent.Node
		compiled string
		wantKeys []any
		insecure bool
		wantErr  string
	}{
		{name: "node keys", node: agent.Node{TrustedKeys: []string{keyA}}, wantKeys: []any{keyA}},
		{name: "node keys replace compiled-in ones", node: agent.Node{TrustedKeys: []string{keyA}}, compiled: keyB, wantKeys: []any{keyA}},
		{name: "compiled-in keys", compiled: keyA + ", " + strings.ToUpper(keyB), wantKeys: []any{keyA, keyB}},
		{name: "no keys", wantErr: "no trusted spec-signing keys"},
		{name: "insecure without keys", node: agent.Node{InsecureUnsigned: true}, insecure: true},
		{name: "bad compiled-in key", compiled: keyA + ",abc", wantErr: "compiled-in public key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := manager.PublicKey
			manager.PublicKey = tt.compiled
			t.Cleanup(func() { manager.PublicKey = old })
			def, err := mmsmanager.MachineDefinition(tt.node)
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
			props := properties(t, def, "machines")
			got, _ := props["public_keys"].([]any)
			if diff := cmp.Diff(tt.wantKeys, got); diff != "" {
				t.Errorf("public_keys (-want +got):\n%s", diff)
			}
			if ins, _ := props["insecure_unsigned"].(bool); ins != tt.insecure {
				t.Errorf("insecure_unsigned = %v, want %v", ins, tt.insecure)
			}
			if _, err := watchers.Build("machines", def.Watchers[1].Properties); err != nil {
				t.Errorf("machines properties do not build: %v", err)
			}
		})
	}
}

// TestMachineDefinitionNoInjection checks that node settings land in the
// properties verbatim and cannot add watchers or transitions (Choria W4).
func TestMachineDefinitionNoInjection(t *testing.T) {
	evil := "B\"\n  - name: evil\n    type: exec\n    properties: {command: /bin/sh}\n"
	def, err := mmsmanager.MachineDefinition(agent.Node{TrustedKeys: []string{keyA}, Bucket: evil, Key: "{{lookup \"facts.x\"}}"})
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
