package expressionwatcher

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []struct {
	name  string
	props string
	err   string
}{
	{name: "success only", props: `{"success_when":"data.x > 1"}`},
	{name: "fail only", props: `{"fail_when":"facts.os.family == 'linux'"}`},
	{name: "both", props: `{"success_when":"identity matches '^web'","fail_when":"get_fact('os.family') == 'windows'"}`},
	{name: "untyped data compiles", props: `{"success_when":"data.x"}`},
	{name: "neither", props: `{}`, err: "properties: success_when or fail_when: at least one is required"},
	{name: "blank", props: `{"success_when":"  ","fail_when":""}`, err: "properties: success_when or fail_when: at least one is required"},
	{name: "typo in property", props: `{"success_whem":"true"}`, err: `properties: json: unknown field "success_whem"`},
	{name: "unknown name", props: `{"success_when":"dat.x > 1"}`, err: "properties: success_when: unknown name dat (1:1)\n | dat.x > 1\n | ^"},
	{name: "not boolean", props: `{"success_when":"1 + 2"}`, err: "properties: success_when: expected bool, but got int"},
	{name: "syntax", props: `{"fail_when":"facts.os.family =="}`, err: "properties: fail_when: unexpected token EOF (1:18)\n | facts.os.family ==\n | .................^"},
	{name: "get_fact argument", props: `{"fail_when":"get_fact(1) == nil"}`, err: "properties: fail_when: cannot use int as argument (type string) to call get_fact  (1:10)\n | get_fact(1) == nil\n | .........^"},
	{name: "identity is a string", props: `{"fail_when":"identity == 1"}`, err: "properties: fail_when: invalid operation: == (mismatched types string and int) (1:10)\n | identity == 1\n | .........^"},
	{name: "too long", props: `{"success_when":"` + strings.Repeat("(", MaxExpressionLength) + `true"}`, err: "properties: success_when: 4100 characters, the most is 4096"},
	{name: "both bad", props: `{"success_when":"x","fail_when":"1"}`, err: "properties: success_when: unknown name x (1:1)\n | x\n | ^\nfail_when: expected bool, but got int"},
}

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watchers.Build("expression", json.RawMessage(tt.props))
			if got := errString(err); got != tt.err {
				t.Errorf("Build(expression, %s) err = %q, want %q", tt.props, got, tt.err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestEnvironment(t *testing.T) {
	tests := []struct {
		name, expr string
	}{
		{name: "facts are a map", expr: `facts.os.family == "linux"`},
		{name: "get_fact", expr: `get_fact("os.family") == "linux"`},
		{name: "get_fact list index", expr: `get_fact("disks.1.size") == 20`},
		{name: "get_fact missing", expr: `get_fact("os.nope.deeper") == nil && get_fact("disks.9") == nil && get_fact("") == nil`},
		{name: "identity", expr: `identity == "node.example.net"`},
		{name: "data", expr: `data.BUCKET_key.count == 3 && data.flag`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			d.Facts = func() map[string]any {
				return map[string]any{
					"os":    map[string]any{"family": "linux"},
					"disks": []any{map[string]any{"size": 10.0}, map[string]any{"size": 20.0}},
				}
			}
			if err := d.Data.Put("BUCKET_key", map[string]any{"count": 3}); err != nil {
				t.Fatal(err)
			}
			if err := d.Data.Put("flag", true); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(map[string]string{"success_when": tt.expr})
			w := watchertest.BuildWith(t, d, "expression", string(b))
			res, err := w.Check(t.Context())
			if err != nil || res.Outcome != watchers.Success {
				t.Errorf("Check(%s) = %v, %v; want success", tt.expr, res.Outcome, err)
			}
		})
	}
}

func TestEdges(t *testing.T) {
	type step struct {
		state    string // value of data.state before the check; "-" deletes it
		inactive bool   // leave the watcher's states before the check
		outcome  watchers.Outcome
		prev     string
		err      bool
	}
	tests := []struct {
		name  string
		props string
		steps []step
	}{
		{name: "success edges only", props: `{"success_when":"data.state == 'up'","fail_when":"data.state == 'down'"}`, steps: []step{
			{state: "up", outcome: watchers.Success, prev: "success_when"},
			{state: "up", outcome: watchers.Unchanged, prev: "success_when"},
			{state: "up", outcome: watchers.Unchanged, prev: "success_when"},
			{state: "down", outcome: watchers.Failure, prev: "failed_when"},
			{state: "down", outcome: watchers.Unchanged, prev: "failed_when"},
			{state: "other", outcome: watchers.Report, prev: "no_match"},
			{state: "other", outcome: watchers.Unchanged, prev: "no_match"},
			{state: "up", outcome: watchers.Success, prev: "success_when"},
		}},
		{name: "first no match is quiet", props: `{"success_when":"data.state == 'up'"}`, steps: []step{
			{state: "other", outcome: watchers.Unchanged, prev: "no_match"},
			{state: "up", outcome: watchers.Success, prev: "success_when"},
		}},
		{name: "success_when wins", props: `{"success_when":"data.state != ''","fail_when":"data.state == 'down'"}`, steps: []step{
			{state: "down", outcome: watchers.Success, prev: "success_when"},
		}},
		{name: "re-entering is an edge", props: `{"fail_when":"data.state == 'down'"}`, steps: []step{
			{state: "down", outcome: watchers.Failure, prev: "failed_when"},
			{state: "down", inactive: true, outcome: watchers.Failure, prev: "failed_when"},
			{state: "down", outcome: watchers.Unchanged, prev: "failed_when"},
			{state: "up", inactive: true, outcome: watchers.Unchanged, prev: "no_match"},
		}},
		{name: "errors", props: `{"success_when":"data.state"}`, steps: []step{
			{state: "not a bool", outcome: watchers.Failure, prev: "error", err: true},
			{state: "not a bool", outcome: watchers.Failure, prev: "error", err: true},
			{state: "-", outcome: watchers.Report, prev: "no_match"}, // nil is false
		}},
		{name: "recovering from an error is an edge", props: `{"success_when":"data.state > 'm'"}`, steps: []step{
			{state: "z", outcome: watchers.Success, prev: "success_when"},
			{state: "-", outcome: watchers.Failure, prev: "error", err: true},
			{state: "z", outcome: watchers.Success, prev: "success_when"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			w := watchertest.BuildWith(t, d, "expression", tt.props)
			for i, s := range tt.steps {
				if s.state == "-" {
					if err := d.Data.Delete("state"); err != nil {
						t.Fatal(err)
					}
				} else if err := d.Data.Put("state", s.state); err != nil {
					t.Fatal(err)
				}
				if s.inactive {
					w.(watchers.StateObserver).StateChanged(false)
					w.(watchers.StateObserver).StateChanged(true)
				}
				res, err := w.Check(t.Context())
				if (err != nil) != s.err {
					t.Fatalf("step %d: Check() err = %v, want error %v", i, err, s.err)
				}
				if res.Outcome != s.outcome || res.State.(State).PreviousOutcome != s.prev {
					t.Fatalf("step %d: Check() = %v %+v, want %v %s", i, res.Outcome, res.State, s.outcome, s.prev)
				}
			}
		})
	}
}

func TestNoDataNoFacts(t *testing.T) {
	d := watchertest.Deps(t)
	d.Data = nil
	d.Facts = func() map[string]any { return nil }
	w := watchertest.BuildWith(t, d, "expression", `{"success_when":"len(data) == 0 && len(facts) == 0 && get_fact('a') == nil"}`)
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Errorf("Check() = %v, %v; want success", res.Outcome, err)
	}
}

// FuzzDecodeProperties feeds arbitrary properties through the registry's
// strict decoding, Validate and compilation: it must never panic, and a
// config it accepts must have a compiled expression.
func FuzzDecodeProperties(f *testing.F) {
	for _, tt := range validateTests {
		f.Add([]byte(tt.props))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := watchers.Build("expression", b)
		if err != nil {
			return
		}
		if ew := w.(*Watcher); ew.success == nil && ew.fail == nil {
			t.Fatalf("Build(%q) accepted no expression", b)
		}
	})
}
