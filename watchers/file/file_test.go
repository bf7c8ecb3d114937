package filewatcher

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []struct {
	name  string
	props string
	err   string
	mode  os.FileMode
}{
	{name: "stat mode", props: `{"path":"x"}`},
	{name: "gather", props: `{"path":"/etc/x","gather_initial_state":true}`},
	{name: "content mode", props: `{"path":"x","contents":"hi\n","mode":"0644"}`, mode: 0o644},
	{name: "empty contents", props: `{"path":"x","contents":"","mode":"600"}`, mode: 0o600},
	{name: "0o prefix", props: `{"path":"x","contents":"","mode":"0o750","owner":"root","group":"0"}`, mode: 0o750},
	{name: "null contents is stat mode", props: `{"path":"x","contents":null}`},
	{name: "missing path", props: `{}`, err: "properties: path: required"},
	{name: "nul in path", props: `{"path":"a\u0000b"}`, err: "properties: path: contains a NUL byte"},
	{name: "typo", props: `{"path":"x","contnets":"y"}`, err: `properties: json: unknown field "contnets"`},
	{name: "contents without mode", props: `{"path":"x","contents":"y"}`, err: "properties: mode: required when contents is set"},
	{name: "mode without contents", props: `{"path":"x","mode":"0644"}`, err: "properties: mode: only used together with contents"},
	{name: "owner and group without contents", props: `{"path":"x","owner":"root","group":"root"}`,
		err: "properties: owner: only used together with contents\ngroup: only used together with contents"},
	{name: "symbolic mode", props: `{"path":"x","contents":"","mode":"rw-r--r--"}`, err: `properties: mode: "rw-r--r--" is not an octal mode like "0644"`},
	{name: "decimal digits", props: `{"path":"x","contents":"","mode":"0999"}`, err: `properties: mode: "0999" is not an octal mode like "0644"`},
	{name: "empty octal", props: `{"path":"x","contents":"","mode":"0o"}`, err: `properties: mode: "0o" is not an octal mode like "0644"`},
	{name: "signed", props: `{"path":"x","contents":"","mode":"+644"}`, err: `properties: mode: "+644" is not an octal mode like "0644"`},
	{name: "setuid", props: `{"path":"x","contents":"","mode":"04755"}`, err: `properties: mode: "04755" is above 0777: setuid, setgid and sticky bits are not managed`},
	{name: "numeric mode", props: `{"path":"x","contents":"","mode":420}`, err: "properties: json: cannot unmarshal number into Go struct field Watcher.mode of type string"},
	{name: "every problem", props: `{"mode":"9"}`, err: "properties: path: required\n" + `mode: "9" is not an octal mode like "0644"` + "\nmode: only used together with contents"},
}

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := watchers.Build("file", json.RawMessage(tt.props))
			if got := errString(err); got != tt.err {
				t.Fatalf("Build(file, %s) err = %q, want %q", tt.props, got, tt.err)
			}
			if err == nil && w.(*Watcher).mode != tt.mode {
				t.Errorf("Build(file, %s) mode = %o, want %o", tt.props, w.(*Watcher).mode, tt.mode)
			}
		})
	}
}

func TestRelativePath(t *testing.T) {
	d := watchertest.Deps(t)
	w := watchertest.BuildWith(t, d, "file", `{"path":"sub/../f"}`).(*Watcher)
	if want := filepath.Join(d.Dir, "f"); w.path != want {
		t.Errorf("path = %q, want %q", w.path, want)
	}
	abs := watchertest.BuildWith(t, d, "file", `{"path":"/etc/hostname"}`).(*Watcher)
	if abs.path != "/etc/hostname" {
		t.Errorf("path = %q, want /etc/hostname", abs.path)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// step is one action on the file followed by a check and what it must find.
type step struct {
	do      func(t *testing.T, path string)
	outcome watchers.Outcome
	state   string // previous_outcome
	reason  string
}

func write(content string) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// touch moves the modification time without changing the size.
func touch(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mt := fi.ModTime().Add(-time.Hour)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func nothing(*testing.T, string) {}

func TestStatMode(t *testing.T) {
	tests := []struct {
		name   string
		props  string
		before func(t *testing.T, path string) // before Build
		steps  []step
	}{
		{
			name: "first sight is a change", props: `{"path":"f"}`, before: write("a"),
			steps: []step{
				{do: nothing, outcome: watchers.Success, state: "changed", reason: "created"},
				{do: nothing, outcome: watchers.Unchanged, state: "unchanged"},
				{do: write("bb"), outcome: watchers.Success, state: "changed", reason: "modified"},
				{do: touch, outcome: watchers.Success, state: "changed", reason: "modified"},
				{do: nothing, outcome: watchers.Unchanged, state: "unchanged"},
				{do: remove, outcome: watchers.Failure, state: "error", reason: "does not exist"},
				{do: nothing, outcome: watchers.Unchanged, state: "error", reason: "does not exist"},
				{do: nothing, outcome: watchers.Unchanged, state: "error", reason: "does not exist"},
				{do: write("c"), outcome: watchers.Success, state: "changed", reason: "created"},
			},
		},
		{
			name: "gather initial state", props: `{"path":"f","gather_initial_state":true}`, before: write("a"),
			steps: []step{
				{do: nothing, outcome: watchers.Unchanged, state: "unchanged"},
				{do: write("xyz"), outcome: watchers.Success, state: "changed", reason: "modified"},
			},
		},
		{
			name: "missing from the start", props: `{"path":"f"}`, before: nothing,
			steps: []step{
				{do: nothing, outcome: watchers.Failure, state: "error", reason: "does not exist"},
				{do: nothing, outcome: watchers.Unchanged, state: "error", reason: "does not exist"},
				{do: write(""), outcome: watchers.Success, state: "changed", reason: "created"},
			},
		},
		{
			name: "gathered as missing", props: `{"path":"f","gather_initial_state":true}`, before: nothing,
			steps: []step{
				{do: nothing, outcome: watchers.Unchanged, state: "error", reason: "does not exist"},
				{do: write("a"), outcome: watchers.Success, state: "changed", reason: "created"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			path := filepath.Join(d.Dir, "f")
			tt.before(t, path)
			w := watchertest.BuildWith(t, d, "file", tt.props)
			for i, s := range tt.steps {
				s.do(t, path)
				res, err := w.Check(t.Context())
				if err != nil {
					t.Fatalf("step %d: Check() err = %v", i, err)
				}
				want := watchers.Result{Outcome: s.outcome, State: State{Path: path, PreviousOutcome: s.state, Reason: s.reason}}
				if diff := cmp.Diff(want, res); diff != "" {
					t.Fatalf("step %d: Check() (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestStatError(t *testing.T) {
	d := watchertest.Deps(t)
	if err := os.WriteFile(filepath.Join(d.Dir, "notadir"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := watchertest.BuildWith(t, d, "file", `{"path":"notadir/f"}`)
	res, err := w.Check(t.Context())
	if err == nil || res.Outcome != watchers.Failure {
		t.Fatalf("Check(path under a regular file) = %v, %v; want a failure with an error", res.Outcome, err)
	}
	if st := res.State.(State); st.PreviousOutcome != "error" || st.Reason != err.Error() {
		t.Errorf("state = %+v, want previous_outcome error with the error as reason", st)
	}
}

// FuzzDecodeProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: it must never panic, and a config it accepts
// must be usable.
func FuzzDecodeProperties(f *testing.F) {
	for _, tt := range validateTests {
		f.Add([]byte(tt.props))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := watchers.Build("file", b)
		if err != nil {
			return
		}
		fw := w.(*Watcher)
		if fw.Path == "" || fw.mode > 0o777 || (fw.Contents != nil && fw.Mode == "") {
			t.Fatalf("Build(%q) accepted path %q mode %q (%o)", b, fw.Path, fw.Mode, fw.mode)
		}
	})
}
