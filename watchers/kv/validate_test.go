package kvwatcher

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/kvname"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []struct {
	name    string
	props   string
	err     string
	mode    string
	dataKey string
	resync  time.Duration
}{
	{name: "defaults", props: `{"bucket":"MACHINES","key":"spec"}`, mode: ModeWatch, dataKey: "MACHINES_spec", resync: DefaultResyncInterval},
	{name: "poll", props: `{"bucket":"MACHINES","key":"spec","mode":"poll"}`, mode: ModePoll, dataKey: "MACHINES_spec", resync: DefaultResyncInterval},
	{name: "explicit watch", props: `{"bucket":"B","key":"k","mode":"watch","resync_interval":"5s"}`, mode: ModeWatch, dataKey: "B_k", resync: 5 * time.Second},
	{name: "no bucket prefix", props: `{"bucket":"MACHINES","key":"spec","bucket_prefix":false}`, mode: ModeWatch, dataKey: "spec", resync: DefaultResyncInterval},
	{name: "bucket prefix true", props: `{"bucket":"MACHINES","key":"spec","bucket_prefix":true}`, mode: ModeWatch, dataKey: "MACHINES_spec", resync: DefaultResyncInterval},
	{name: "store key wins", props: `{"bucket":"MACHINES","key":"spec","bucket_prefix":true,"store_key":"desired"}`, mode: ModeWatch, dataKey: "desired", resync: DefaultResyncInterval},
	{name: "store key without prefix", props: `{"bucket":"MACHINES","key":"spec","bucket_prefix":false,"store_key":"desired"}`, mode: ModeWatch, dataKey: "desired", resync: DefaultResyncInterval},
	{name: "dotted key", props: `{"bucket":"b-1_x","key":"a.b/c=d-e_f","on_successful_get":true,"on_matching_update":true}`, mode: ModeWatch, dataKey: "b-1_x_a.b/c=d-e_f", resync: DefaultResyncInterval},
	{name: "resync in seconds", props: `{"bucket":"B","key":"k","resync_interval":2}`, mode: ModeWatch, dataKey: "B_k", resync: 2 * time.Second},
	{name: "empty", props: `{}`, err: "properties: bucket: required\nkey: required"},
	{name: "bad bucket", props: `{"bucket":"KV.X","key":"k"}`, err: `properties: bucket: "KV.X" is not a bucket name: use letters, digits, _ and -`},
	{name: "wildcard key", props: `{"bucket":"B","key":"a.>"}`, err: `properties: key: "a.>" is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)`},
	{name: "star key", props: `{"bucket":"B","key":"*"}`, err: `properties: key: "*" is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)`},
	{name: "empty token", props: `{"bucket":"B","key":"a..b"}`, err: `properties: key: "a..b" is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)`},
	{name: "leading dot", props: `{"bucket":"B","key":".a"}`, err: `properties: key: ".a" is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)`},
	{name: "template key", props: `{"bucket":"B","key":"{{ lookup \"facts.x\" \"\" }}"}`, mode: ModeWatch, dataKey: `B_{{ lookup "facts.x" "" }}`, resync: DefaultResyncInterval},
	{name: "identity key", props: `{"bucket":"B","key":"nodes.{{ .Identity }}","store_key":"{{ .Machine }}"}`, mode: ModeWatch, dataKey: `{{ .Machine }}`, resync: DefaultResyncInterval},
	{name: "template syntax", props: `{"bucket":"B","key":"nodes.{{ .Identity"}`, err: `properties: key: template "nodes.{{ .Identity": template: property:1: unclosed action`},
	{name: "template function", props: `{"bucket":"{{ bucket }}","key":"k"}`, err: `properties: bucket: template "{{ bucket }}": template: property:1: function "bucket" not defined`},
	{name: "bad mode", props: `{"bucket":"B","key":"k","mode":"push"}`, err: `properties: mode: "push": want "watch" or "poll"`},
	{name: "blank store key", props: `{"bucket":"B","key":"k","store_key":"  "}`, err: "properties: store_key: blank"},
	{name: "resync in poll mode", props: `{"bucket":"B","key":"k","mode":"poll","resync_interval":"5s"}`, err: "properties: resync_interval: only used in watch mode"},
	{name: "resync too short", props: `{"bucket":"B","key":"k","resync_interval":"100ms"}`, err: "properties: resync_interval: 100ms is below the minimum 1s"},
	{name: "bad resync", props: `{"bucket":"B","key":"k","resync_interval":"soon"}`, err: `properties: invalid duration "soon": want e.g. 30s, 5m, 1h30m, 2d`},
	{name: "choria republish_trigger", props: `{"bucket":"B","key":"k","republish_trigger":"x.y"}`, err: "properties: republish_trigger: not supported: mode watch (the default) follows the key as it changes, no republish stream needed"},
	{name: "choria hiera_config", props: `{"bucket":"B","key":"k","hiera_config":true}`, err: "properties: hiera_config: not supported: put the node's resolved value in the key (for example under a templated key), or select it with an expression watcher"},
	{name: "choria query", props: `{"bucket":"B","key":"k","query":"a.b"}`, err: `properties: query: not supported: the whole value is stored; read the part you need with an expression watcher (data.KEY.field), a template (lookup "data.KEY.field") or WATCHER_DATA`},
	{name: "choria false and empty are fine", props: `{"bucket":"B","key":"k","hiera_config":false,"query":"","republish_trigger":""}`, mode: ModeWatch, dataKey: "B_k", resync: DefaultResyncInterval},
	{name: "typo", props: `{"bucket":"B","key":"k","bucket_prefx":false}`, err: `properties: json: unknown field "bucket_prefx"`},
	{name: "string bool", props: `{"bucket":"B","key":"k","on_successful_get":"yes"}`, err: "properties: json: cannot unmarshal string into Go struct field Watcher.on_successful_get of type bool"},
	{name: "every problem", props: `{"bucket":"a b","mode":"x","resync_interval":"1ms"}`,
		err: `properties: bucket: "a b" is not a bucket name: use letters, digits, _ and -` + "\nkey: required\n" + `mode: "x": want "watch" or "poll"` + "\nresync_interval: 1ms is below the minimum 1s"},
}

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := watchers.Build("kv", json.RawMessage(tt.props))
			if got := errString(err); got != tt.err {
				t.Fatalf("Build(kv, %s) err = %q, want %q", tt.props, got, tt.err)
			}
			if err != nil {
				return
			}
			kw := w.(*Watcher)
			if kw.mode != tt.mode || kw.DataKey() != tt.dataKey || kw.resync != tt.resync {
				t.Errorf("Build(kv, %s) = mode %q, data key %q, resync %v; want %q, %q, %v",
					tt.props, kw.mode, kw.DataKey(), kw.resync, tt.mode, tt.dataKey, tt.resync)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	info, ok := watchers.Lookup("kv")
	if !ok {
		t.Fatal(`Lookup("kv") found nothing`)
	}
	if info.DefaultInterval.Std() != DefaultInterval || info.Timeout.Std() <= opTimeout || info.MinInterval.Std() != time.Second {
		t.Errorf("Lookup(kv) = interval %v, timeout %v, min %v; want %v, more than %v, 1s",
			info.DefaultInterval, info.Timeout, info.MinInterval, DefaultInterval, opTimeout)
	}
	if got, want := info.EventType(), "io.choria.machine.watcher.kv.v1.state"; got != want {
		t.Errorf("EventType() = %q, want %q", got, want)
	}
}

func TestProvisionNeedsConnection(t *testing.T) {
	_, err := watchertest.New(watchertest.Deps(t), "kv", `{"bucket":"B","key":"k"}`)
	if err == nil || !strings.Contains(err.Error(), "no NATS connection") {
		t.Errorf("New(kv without a connection) = %v, want a no NATS connection error", err)
	}
}

// FuzzDecodeProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: never a panic, and a watcher that builds has
// a mode, a data key and a resync interval within bounds.
func FuzzDecodeProperties(f *testing.F) {
	for _, tt := range validateTests {
		f.Add([]byte(tt.props))
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"bucket":"B","key":"k"} {}`))
	f.Fuzz(func(t *testing.T, props []byte) {
		w, err := watchers.Build("kv", props)
		if err != nil {
			return
		}
		kw := w.(*Watcher)
		if kw.mode != ModeWatch && kw.mode != ModePoll {
			t.Fatalf("Build(%q) mode = %q", props, kw.mode)
		}
		if kw.DataKey() == "" || kw.Bucket == "" || kw.Key == "" {
			t.Fatalf("Build(%q) = bucket %q key %q data key %q, want all set", props, kw.Bucket, kw.Key, kw.DataKey())
		}
		if (kvname.Key(kw.Key) != nil && !render.Has(kw.Key)) || (kvname.Bucket(kw.Bucket) != nil && !render.Has(kw.Bucket)) {
			t.Fatalf("Build(%q) accepted bucket %q key %q", props, kw.Bucket, kw.Key)
		}
		if kw.resync < MinResyncInterval {
			t.Fatalf("Build(%q) resync = %v, below %v", props, kw.resync, MinResyncInterval)
		}
	})
}

func TestTemplates(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "NODES_linux")
	put(t, kv, "nodes.node.example.net", "mine")
	put(t, kv, "nodes.other", "not mine")
	w, d := env.build(t, `{"bucket":"NODES_{{ lookup \"facts.os.family\" \"any\" }}","key":"nodes.{{ .Identity }}","mode":"poll","store_key":"{{ .Watcher }}_value"}`)
	if w.Bucket != "NODES_linux" || w.Key != "nodes.node.example.net" || w.DataKey() != "test_value" {
		t.Errorf("rendered bucket %q, key %q, data key %q; want NODES_linux, nodes.node.example.net, test_value", w.Bucket, w.Key, w.DataKey())
	}
	r := pollCheck(t, w)
	if r.err != nil || r.outcome != watchers.Success || r.state.Key != "nodes.node.example.net" || r.state.Bucket != "NODES_linux" {
		t.Fatalf("check = %+v, want a success reading NODES_linux/nodes.node.example.net", r)
	}
	if v, _ := d.Data.Get("test_value"); v != "mine" {
		t.Errorf("data[test_value] = %v, want mine", v)
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name, props, err string
	}{
		{name: "renders a bad key", props: `{"bucket":"B","key":"nodes.{{ .Facts.os }}"}`,
			err: `provision: key: template "nodes.{{ .Facts.os }}": "nodes.map[family:linux]" is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)`},
		{name: "renders empty", props: `{"bucket":"B","key":"{{ lookup \"facts.nope\" \"\" }}"}`,
			err: `provision: key: template "{{ lookup \"facts.nope\" \"\" }}" renders empty`},
		{name: "missing fact", props: `{"bucket":"B","key":"{{ .Facts.nope }}"}`,
			err: `provision: key: render template "{{ .Facts.nope }}": template: property:1:9: executing "property" at <.Facts.nope>: map has no entry for key "nope"`},
		{name: "bucket and key", props: `{"bucket":"{{ .Machine }}.x","key":"{{ .Identity }}.."}`,
			err: "provision: bucket: template \"{{ .Machine }}.x\": \"test.x\" is not a bucket name: use letters, digits, _ and -\n" +
				`key: template "{{ .Identity }}..": "node.example.net.." is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watchertest.New(watchertest.Deps(t), "kv", tt.props)
			if got := errString(err); got != tt.err {
				t.Errorf("New(kv, %s) err =\n%s\nwant\n%s", tt.props, got, tt.err)
			}
		})
	}
}
