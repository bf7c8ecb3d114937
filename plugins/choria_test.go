package plugins_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
	_ "github.com/mms-io/mms/plugins"
	"github.com/mms-io/mms/watchers"
)

// choriaDir holds machine.yaml files in Choria's format.
const choriaDir = "../machine/testdata/choria"

// TestChoriaMachines loads every Choria-format machine in choriaDir the way
// the agent does (parse, validate, build and provision every watcher, on a
// node connected to NATS) with every compiled-in watcher type: each either
// loads (with the warnings listed) or fails with the error that says what
// to use instead.
//
// choria records what Choria v0.30.2's own loader does with each file
// (aagent/machine FromDir, then each watcher's constructor, run on these
// files in a checkout of go-choria v0.30.2): every file in choriaDir is
// one Choria loads, except where it says otherwise.
func TestChoriaMachines(t *testing.T) {
	type want struct {
		err      string   // error the load must contain, "" to load
		warnings []string // Definition.Warnings when it loads
		choria   string   // what Choria v0.30.2 does with it
	}
	const loads = "loads"
	tests := map[string]want{
		"exec-governed.yaml":        {choria: loads},
		"file-templates.yaml":       {choria: loads},
		"gossip.yaml":               {choria: loads},
		"gossip-registration.yaml":  {choria: loads},
		"kv-identity.yaml":          {choria: loads},
		"kv-templated.yaml":         {choria: loads},
		"metric.yaml":               {choria: loads},
		"scout-check.yaml":          {choria: loads},
		"machines-manager.yaml":     {choria: loads},
		"shipped-manager.yaml":      {choria: loads},
		"nagios-goss.yaml":          {choria: loads, err: `builtin: goss is not supported: run goss as a plugin, for example plugin: "goss -g goss.yaml validate --format nagios"`},
		"refused-plugins.yaml":      {choria: loads, err: `watcher "manage_plugins" (plugins): unknown watcher type "plugins": Choria's plugins watcher is not supported: ` + watchers.Refused()["plugins"]},
		"refused-homekit.yaml":      {choria: "refuses it: unknown watcher 'homekit'", err: `unknown watcher type "homekit": Choria's homekit watcher is not supported: ` + watchers.Refused()["homekit"]},
		"refused-httpswitch.yaml":   {choria: loads, err: `unknown watcher type "httpswitch": Choria's httpswitch watcher is not supported: ` + watchers.Refused()["httpswitch"]},
		"refused-ccm-manifest.yaml": {choria: loads, err: `unknown watcher type "ccm_manifest": Choria's ccm_manifest watcher is not supported: ` + watchers.Refused()["ccm_manifest"]},
		"weak-types.yaml": {choria: loads, warnings: []string{
			`line 27: watcher "motd" (file): properties: gather_initial_state: "t" is a string, read as true: write gather_initial_state: true`,
			`line 39: watcher "react" (exec): properties: suppress_success_announce: "true" is a string, read as true: write suppress_success_announce: true`,
			`line 40: watcher "react" (exec): properties: governor_timeout: ignored without governor (as in Choria): remove it, or name the governor`,
			`line 42: watcher "settle" (timer): properties: timer: not set (or 0); Choria's default of 1s applies: write timer: 1s`,
		}},
	}
	files, err := filepath.Glob(filepath.Join(choriaDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for name := range tests {
		if !slices.Contains(names, name) {
			t.Errorf("%s: listed here but not in %s", name, choriaDir)
		}
	}
	nc := natstest.Connect(t, natstest.RunJetStream(t))
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			tt, listed := tests[name]
			if !listed {
				t.Fatalf("%s/%s is not listed in this test: say whether it loads, here and in Choria", choriaDir, name)
			}
			b, err := os.ReadFile(filepath.Join(choriaDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if tt.choria != loads && !strings.Contains(string(b), "Choria removed") {
				t.Errorf("%s does not load in Choria (%s) and does not say so", name, tt.choria)
			}
			def, err := load(t, filepath.Join(choriaDir, name), nc)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("load %s: %v", name, err)
			case tt.err != "" && err == nil:
				t.Errorf("load %s succeeded, want an error containing %q", name, tt.err)
			case tt.err != "" && !strings.Contains(err.Error(), tt.err):
				t.Errorf("load %s error =\n%v\nwant it to contain\n%s", name, err, tt.err)
			}
			if tt.err != "" && strings.Contains(tt.err, "unknown watcher type") && !errors.Is(err, watchers.ErrUnknownType) {
				t.Errorf("load %s error does not wrap watchers.ErrUnknownType", name)
			}
			if err == nil {
				if diff := cmp.Diff(tt.warnings, def.Warnings); diff != "" {
					t.Errorf("load %s warnings (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

// load parses, validates and builds the machine in path as the agent does,
// and returns its definition.
func load(t *testing.T, path string, nc *nats.Conn) (*machine.Definition, error) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	def, err := machine.Parse(b)
	if err != nil {
		return nil, err
	}
	if err := def.Validate(); err != nil {
		return nil, err
	}
	store, err := agent.OpenDataStore(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.NewMachine(def, agent.MachineConfig{Dir: t.TempDir(), Identity: "node1", Data: store, Conn: nc, Host: idleHost(t.TempDir())})
	return def, err
}

// idleHost is a machine host that loads nothing: the machines watcher of a
// Choria manager machine needs one to provision.
type idleHost string

func (h idleHost) MachinesDir() string                                          { return string(h) }
func (idleHost) LoadMachine(context.Context, string, watchers.Definition) error { return nil }
func (idleHost) UnloadMachine(context.Context, string) error                    { return nil }
func (idleHost) MachineState(string) (watchers.MachineState, bool) {
	return watchers.MachineState{}, false
}
