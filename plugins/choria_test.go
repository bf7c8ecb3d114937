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
// loads or fails with the error that says what to use instead.
func TestChoriaMachines(t *testing.T) {
	tests := map[string]string{ // file → error it must contain, "" to load
		"exec-governed.yaml":        "",
		"gossip.yaml":               "",
		"kv-identity.yaml":          "",
		"kv-templated.yaml":         "",
		"metric.yaml":               "",
		"scout-check.yaml":          "",
		"machines-manager.yaml":     "",
		"seed-manager.yaml":         "",
		"nagios-goss.yaml":          `builtin: goss is not supported: run goss as a plugin, for example plugin: "goss -g goss.yaml validate --format nagios"`,
		"refused-plugins.yaml":      `watcher "manage_plugins" (plugins): unknown watcher type "plugins": Choria's plugins watcher is not supported: ` + watchers.Refused()["plugins"],
		"refused-homekit.yaml":      `unknown watcher type "homekit": Choria's homekit watcher is not supported: ` + watchers.Refused()["homekit"],
		"refused-httpswitch.yaml":   `unknown watcher type "httpswitch": Choria's httpswitch watcher is not supported: ` + watchers.Refused()["httpswitch"],
		"refused-ccm-manifest.yaml": `unknown watcher type "ccm_manifest": Choria's ccm_manifest watcher is not supported: ` + watchers.Refused()["ccm_manifest"],
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
			want, listed := tests[name]
			if !listed {
				t.Fatalf("%s/%s is not listed in this test: say whether it loads", choriaDir, name)
			}
			err := load(t, filepath.Join(choriaDir, name), nc)
			switch {
			case want == "" && err != nil:
				t.Errorf("load %s: %v", name, err)
			case want != "" && err == nil:
				t.Errorf("load %s succeeded, want an error containing %q", name, want)
			case want != "" && !strings.Contains(err.Error(), want):
				t.Errorf("load %s error =\n%v\nwant it to contain\n%s", name, err, want)
			}
			if want != "" && strings.Contains(want, "unknown watcher type") && !errors.Is(err, watchers.ErrUnknownType) {
				t.Errorf("load %s error does not wrap watchers.ErrUnknownType", name)
			}
		})
	}
}

// load parses, validates and builds the machine in path as the agent does.
func load(t *testing.T, path string, nc *nats.Conn) error {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	def, err := machine.Parse(b)
	if err != nil {
		return err
	}
	if err := def.Validate(); err != nil {
		return err
	}
	store, err := agent.OpenDataStore(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.NewMachine(def, agent.MachineConfig{Dir: t.TempDir(), Identity: "node1", Data: store, Conn: nc, Host: idleHost(t.TempDir())})
	return err
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
