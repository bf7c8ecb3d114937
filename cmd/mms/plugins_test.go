package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/plugins"
	"github.com/mms-io/mms/watchers"
	timerwatcher "github.com/mms-io/mms/watchers/timer"
)

func TestNewPluginsView(t *testing.T) {
	timer := watchers.Info{Type: "timer", Version: "v1", New: func() watchers.Watcher { return new(timerwatcher.Watcher) }}
	local := watchers.Info{Type: "local", Version: "v2", New: func() watchers.Watcher { return new(cliTestWatcher) }}
	tests := []struct {
		name     string
		list     []plugins.Plugin
		types    []watchers.Info
		machines []string
		want     pluginsView
	}{
		{
			name: "nothing compiled in",
			want: pluginsView{Plugins: []plugins.Plugin{}, Watchers: []watcherView{}, Machines: []machineView{}, PublicKeys: []keyView{}},
		},
		{
			name:     "types attributed by package",
			list:     []plugins.Plugin{{Name: "clock", ImportPath: "github.com/mms-io/mms/watchers/timer"}, {Name: "beacon", ImportPath: "example.com/beacon"}},
			types:    []watchers.Info{local, timer},
			machines: []string{"beacon", "manager"},
			want: pluginsView{
				Plugins: []plugins.Plugin{{Name: "clock", ImportPath: "github.com/mms-io/mms/watchers/timer"}, {Name: "beacon", ImportPath: "example.com/beacon"}},
				Watchers: []watcherView{
					{Type: "local", Version: "v2", EventType: "io.choria.machine.watcher.local.v2.state", Package: "github.com/mms-io/mms/cmd/mms", Plugin: ""},
					{Type: "timer", Version: "v1", EventType: "io.choria.machine.watcher.timer.v1.state", Package: "github.com/mms-io/mms/watchers/timer", Plugin: "clock"},
				},
				Machines:   []machineView{{Name: "beacon"}, {Name: "manager"}},
				PublicKeys: []keyView{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newPluginsView(tt.list, tt.types, tt.machines)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("newPluginsView(%v, %d types, %v) mismatch (-want +got):\n%s", tt.list, len(tt.types), tt.machines, diff)
			}
		})
	}
}

func TestPrintPlugins(t *testing.T) {
	tests := []struct {
		name string
		v    pluginsView
		want string
	}{
		{
			name: "empty",
			v:    newPluginsView(nil, nil, nil),
			want: "Plugins (user_plugins.yaml):\n  (none)\n\nWatcher types:\n  (none)\n\nCompiled-in machines:\n  (none)\n\nCompiled-in public keys:\n  (none)\n",
		},
		{
			name: "full",
			v: pluginsView{
				Plugins: []plugins.Plugin{{Name: "heartbeat", ImportPath: "example.com/mms-heartbeat"}},
				Watchers: []watcherView{
					{Type: "heartbeat", Version: "v1", EventType: "io.choria.machine.watcher.heartbeat.v1.state", Package: "example.com/mms-heartbeat", Plugin: "heartbeat"},
					{Type: "local", Version: "v2", EventType: "io.choria.machine.watcher.local.v2.state", Package: "main"},
				},
				Machines:   []machineView{{Name: "beacon"}},
				PublicKeys: []keyView{{Key: "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29", KeyID: "abcd"}},
			},
			want: `Plugins (user_plugins.yaml):
  heartbeat  example.com/mms-heartbeat

Watcher types:
  TYPE       VERSION  EVENT TYPE                                    PLUGIN
  heartbeat  v1       io.choria.machine.watcher.heartbeat.v1.state  heartbeat
  local      v2       io.choria.machine.watcher.local.v2.state      -

Compiled-in machines:
  beacon

Compiled-in public keys:
  3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29  (key id abcd)
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printPlugins(&out, tt.v); err != nil {
				t.Fatalf("printPlugins: %v", err)
			}
			if diff := cmp.Diff(tt.want, out.String()); diff != "" {
				t.Errorf("printPlugins(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// TestPluginsCommand runs `mms plugins --json` against this binary's real
// registries: the user_plugins.yaml entries, the built-in watcher types they
// register, and the test's own type, which no plugin compiled in. (In a
// test binary the package of that type is cmd/mms's import path; in the
// mms binary it is "main".)
func TestPluginsCommand(t *testing.T) {
	r := mmsOK(t, "", "plugins", "--json")
	var v pluginsView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("mms plugins --json printed invalid JSON: %v\n%s", err, r.stdout)
	}
	if diff := cmp.Diff(plugins.List(), v.Plugins); diff != "" {
		t.Errorf("mms plugins --json plugins mismatch (-want +got):\n%s", diff)
	}
	types := map[string]watcherView{}
	for _, w := range v.Watchers {
		types[w.Type] = w
	}
	// Plugins that register a machine rather than a watcher type.
	machinePlugins := map[string]string{"manager": "mms_manager"}
	for _, p := range plugins.List() {
		if m, ok := machinePlugins[p.Name]; ok {
			if !slices.Contains(v.Machines, machineView{Name: m}) {
				t.Errorf("mms plugins --json machines = %v, want %q from plugin %q", v.Machines, m, p.Name)
			}
			continue
		}
		w, ok := types[p.Name]
		if !ok {
			t.Errorf("mms plugins --json has no watcher type %q; watchers: %v", p.Name, v.Watchers)
			continue
		}
		want := watcherView{Type: p.Name, Version: "v1", EventType: "io.choria.machine.watcher." + p.Name + ".v1.state", Package: p.ImportPath, Plugin: p.Name}
		if w != want {
			t.Errorf("mms plugins --json watcher %q = %+v, want %+v", p.Name, w, want)
		}
	}
	if w, want := types["mmsclitest"], (watcherView{Type: "mmsclitest", Version: "v1", EventType: "io.choria.machine.watcher.mmsclitest.v1.state", Package: "github.com/mms-io/mms/cmd/mms"}); w != want {
		t.Errorf("mms plugins --json watcher mmsclitest = %+v, want %+v", w, want)
	}
	if v.Machines == nil {
		t.Errorf("mms plugins --json machines is null, want a list")
	}
	if v.PublicKeys == nil || len(v.PublicKeys) != 0 {
		t.Errorf("mms plugins --json public_keys = %v, want [] in a binary built without -ldflags", v.PublicKeys)
	}

	text := mmsOK(t, "", "plugins")
	var want bytes.Buffer
	if err := printPlugins(&want, v); err != nil {
		t.Fatal(err)
	}
	if text.stdout != want.String() {
		t.Errorf("mms plugins printed\n%s\nwant\n%s", text.stdout, want.String())
	}
}
