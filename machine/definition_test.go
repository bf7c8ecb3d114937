package machine

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mms-io/mms/watchers"
)

const validYAML = `
name: demo
version: 1.0.0
initial_state: idle
splay_start: 5
transitions:
  - name: go
    from: [idle]
    destination: busy
    description: start working
  - name: back
    from: [busy]
    destination: idle
watchers:
  - name: check
    type: probe
    state_match: [idle]
    success_transition: go
    fail_transition: go
    interval: 90s
    announce_interval: 2m
    properties:
      key: k1
      reject: false
`

func TestParseDefinition(t *testing.T) {
	def, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	want := &Definition{
		Name: "demo", Version: "1.0.0", InitialState: "idle", SplayStart: 5,
		Transitions: []Transition{
			{Name: "go", From: []string{"idle"}, Destination: "busy", Description: "start working", line: 7},
			{Name: "back", From: []string{"busy"}, Destination: "idle", line: 11},
		},
		Watchers: []WatcherDef{{
			Name: "check", Type: "probe", StateMatch: []string{"idle"},
			SuccessTransition: "go", FailTransition: "go",
			Interval:         watchers.Duration(90 * time.Second),
			AnnounceInterval: watchers.Duration(2 * time.Minute),
			Properties:       []byte(`{"key":"k1","reject":false}`),
			line:             15,
		}},
	}
	if def.Digest() != sha256.Sum256([]byte(validYAML)) {
		t.Errorf("Digest() = %x, want the sha256 of the parsed bytes", def.Digest())
	}
	if diff := cmp.Diff(want, def, cmp.AllowUnexported(Transition{}, WatcherDef{}), cmpopts.IgnoreFields(Definition{}, "digest"), cmpopts.IgnoreFields(WatcherDef{}, "propLines")); diff != "" {
		t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
	}
	if err := def.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}
	if got, want := def.States(), []string{"idle", "busy"}; !cmp.Equal(got, want) {
		t.Errorf("States() = %v, want %v", got, want)
	}
}

func TestParseDefinitionErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"empty document"}},
		{"not a mapping", "- a\n- b\n", []string{"cannot unmarshal"}},
		{"unknown top-level key", "name: x\nversoin: 1\n", []string{"line 2", `field versoin not found in machine; did you mean "version"?`}},
		{"key repeated with another value", "name: x\nversion: 1\nname: y\n", []string{`line 3: "name" is already set at line 1, to another value: keep one`}},
		{"watcher key repeated with another value", "watchers:\n  - name: a\n    state_match: [A]\n    state_match: [B]\n", []string{`line 4: "state_match" is already set at line 3`}},
		{"property repeated with another value", "watchers:\n  - name: a\n    properties:\n      key: k1\n      key: k2\n", []string{`line 5: "key" is already set at line 4`}},
		{"unknown transition key", "transitions:\n  - name: a\n    form: [x]\n", []string{"line 3", "field form not found in transition"}},
		{"unknown watcher key", "watchers:\n  - name: a\n    typ: probe\n", []string{"line 3", `field typ not found in watcher; did you mean "type"?`}},
		{"bad interval", "watchers:\n  - name: a\n    type: probe\n    interval: soon\n", []string{`line 2: watcher "a" (probe): interval: invalid duration "soon"`}},
		{"negative announce", "watchers:\n  - name: a\n    type: probe\n    announce_interval: -5m\n", []string{`announce_interval: invalid duration "-5m": negative`}},
		{"properties not a map", "watchers:\n  - name: a\n    type: probe\n    properties: [1, 2]\n", []string{`watcher "a" (probe): properties: line 4: must be a mapping`}},
		{"properties list key", "watchers:\n  - name: a\n    type: probe\n    properties:\n      [1, 2]: x\n", []string{"invalid map key"}},
		{"properties int key", "watchers:\n  - name: a\n    type: probe\n    properties:\n      sub:\n        1: x\n", []string{"properties: sub: key 1: keys must be strings"}},
		{"two documents", "name: a\n---\nname: b\n", []string{"more than one YAML document"}},
		{"wrong type", "splay_start: soon\n", []string{"cannot unmarshal"}},
		{"too large", "name: " + strings.Repeat("x", MaxSize) + "\n", []string{"larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want %q", tt.yaml, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse() error %v does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestParseRepeatedKeys loads a key repeated with the same value (in any
// style) with a warning naming both lines, as Choria's examples do it.
func TestParseRepeatedKeys(t *testing.T) {
	yaml := strings.Replace(validYAML, "    state_match: [idle]\n", "    state_match: [idle]\n    state_match:\n      - idle\n", 1)
	yaml = strings.Replace(yaml, "      key: k1\n", "      key: k1\n      key: \"k1\"\n", 1)
	def, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse(repeated keys, same values) = %v", err)
	}
	want := []string{
		`line 18: "state_match" repeats line 17 with the same value; the copy is ignored`,
		`line 26: "key" repeats line 25 with the same value; the copy is ignored`,
	}
	if diff := cmp.Diff(want, def.Warnings); diff != "" {
		t.Errorf("Warnings (-want +got):\n%s", diff)
	}
	if err := def.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if w := def.Watchers[0]; !slices.Equal(w.StateMatch, []string{"idle"}) || string(w.Properties) != `{"key":"k1","reject":false}` {
		t.Errorf("watcher = %+v, want the single values", w)
	}
}

// TestValidateChoriaNames accepts the names Choria's schema accepts, and
// the dots a spec entry may carry.
func TestValidateChoriaNames(t *testing.T) {
	for _, name := range []string{"Web", "SpecialMachine", "web.front_1", "a" + strings.Repeat("b", 150)} {
		def, err := Parse([]byte(strings.Replace(validYAML, "name: demo", "name: "+name, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := def.Validate(); err != nil {
			t.Errorf("Validate(name %q) = %v, want nil", name, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(d *Definition)
		want []string
	}{
		{"missing fields", func(d *Definition) { d.Name, d.Version, d.InitialState = "", "", "" },
			[]string{"name is required", "version is required", "initial_state is required"}},
		{"bad name", func(d *Definition) { d.Name = "../etc" }, []string{`name: invalid name "../etc": want 1 to 200 letters`}},
		{"no transitions or watchers", func(d *Definition) { d.Transitions, d.Watchers = nil, nil },
			[]string{"at least one transition", "at least one watcher"}},
		{"negative splay", func(d *Definition) { d.SplayStart = -1 }, []string{"splay_start -1"}},
		{"duplicate transition", func(d *Definition) { d.Transitions = append(d.Transitions, d.Transitions[0]) },
			[]string{`transition "go": duplicate transition name`}},
		{"transition without from or destination", func(d *Definition) {
			d.Transitions = append(d.Transitions, Transition{Name: "x"})
		}, []string{`transition "x": from needs at least one state`, `transition "x": destination is required`}},
		{"duplicate watcher", func(d *Definition) { d.Watchers = append(d.Watchers, d.Watchers[0]) },
			[]string{`watcher "check" (probe): duplicate watcher name`}},
		{"unknown state", func(d *Definition) { d.Watchers[0].StateMatch = []string{"nowhere"} },
			[]string{`state_match: unknown state "nowhere"`}},
		{"unknown transitions", func(d *Definition) {
			d.Watchers[0].SuccessTransition, d.Watchers[0].FailTransition = "nope", "nada"
		}, []string{`success_transition: unknown transition "nope"`, `fail_transition: unknown transition "nada"`}},
		{"unknown type", func(d *Definition) { d.Watchers[0].Type = "teleport" }, []string{`unknown watcher type "teleport"`}},
		{"interval below minimum", func(d *Definition) { d.Watchers[0].Interval = watchers.Duration(100 * time.Millisecond) },
			[]string{"interval 100ms is below the type's minimum of 1s"}},
		{"announce below a minute", func(d *Definition) { d.Watchers[0].AnnounceInterval = watchers.Duration(30 * time.Second) },
			[]string{"announce_interval 30s is below the minimum of 1m0s"}},
		{"unknown property", func(d *Definition) { d.Watchers[0].Properties = []byte(`{"key":"k","kye":"x"}`) },
			[]string{`watcher "check" (probe): properties: unknown field "kye"; did you mean "key"?`}},
		{"property of the wrong type", func(d *Definition) { d.Watchers[0].Properties = []byte(`{"key":["k"]}`) },
			[]string{`watcher "check" (probe): properties: key: want a string, got a list`}},
		{"property validation", func(d *Definition) { d.Watchers[0].Properties = []byte(`{"key":"k","reject":true}`) },
			[]string{`watcher "check" (probe): properties: rejected on request`}},
		{"bad watcher name", func(d *Definition) { d.Watchers[0].Name = "has space" }, []string{"name must match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def, err := Parse([]byte(validYAML))
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(def)
			err = def.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate() error %v does not wrap ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	def, err := Parse([]byte(`
name: x
version: 1
initial_state: a
transitions:
  - name: t
    from: [a]
    destination: b
watchers:
  - name: one
    type: probe
    state_match: [zz]
    properties: {key: k, extra: 1}
  - name: two
    type: nosuch
`))
	if err != nil {
		t.Fatal(err)
	}
	err = def.Validate()
	for _, w := range []string{
		`line 10: watcher "one" (probe): state_match: unknown state "zz"`,
		`line 13: watcher "one" (probe): properties: unknown field "extra"`,
		`line 14: watcher "two" (nosuch): unknown watcher type "nosuch"`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to contain %q", err, w)
		}
	}
	if !errors.Is(err, watchers.ErrUnknownType) {
		t.Errorf("Validate() error does not wrap watchers.ErrUnknownType")
	}
}

// TestChoriaExamples parses Choria's documented example machines. Their
// watcher types (exec, timer, file, schedule) are not registered in this
// test binary, so only the structure is checked here; type validation
// belongs to the watcher packages.
func TestChoriaExamples(t *testing.T) {
	tests := []struct {
		file     string
		name     string
		watchers []string
		states   []string
	}{
		{"choria-exec-timer.yaml", "SpecialMachine", []string{"exec", "timer"}, []string{"unknown", "ready", "failed", "maintenance"}},
		{"choria-file.yaml", "motd", []string{"file"}, []string{"watching", "changed"}},
		{"choria-schedule.yaml", "business_hours", []string{"schedule"}, []string{"unknown", "off", "on"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			def, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse(%s) error = %v", tt.file, err)
			}
			if def.Name != tt.name {
				t.Errorf("Name = %q, want %q", def.Name, tt.name)
			}
			var types []string
			for _, w := range def.Watchers {
				types = append(types, w.Type)
				if len(w.Properties) == 0 {
					t.Errorf("watcher %q has no properties", w.Name)
				}
			}
			if diff := cmp.Diff(tt.watchers, types); diff != "" {
				t.Errorf("watcher types (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.states, def.States(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("States() (-want +got):\n%s", diff)
			}
			err = def.Validate()
			if !errors.Is(err, watchers.ErrUnknownType) {
				t.Errorf("Validate() = %v, want only unknown-type errors in this test binary", err)
			}
		})
	}
}

func TestLoadDefinition(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(empty dir) = %v, want ErrNotExist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, File), []byte(validYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	def, err := Load(dir)
	if err != nil || def.Name != "demo" {
		t.Fatalf("Load() = %v, %v, want demo", def, err)
	}
	bad := strings.Replace(validYAML, "key: k1", "key: k1\n      nope: 1", 1)
	if err := os.WriteFile(filepath.Join(dir, File), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `unknown field "nope"`) {
		t.Errorf("Load(bad property) = %v, want unknown field error", err)
	}
}

func TestMustParseDefinition(t *testing.T) {
	if def := MustParse([]byte(validYAML)); def.Name != "demo" {
		t.Errorf("MustParse().Name = %q, want demo", def.Name)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustParse(invalid) did not panic")
		}
	}()
	MustParse([]byte("name: x\n"))
}

// FuzzParseDefinition feeds arbitrary bytes to the parser and validator:
// neither may panic, and whatever parses must validate or fail cleanly.
func FuzzParseDefinition(f *testing.F) {
	f.Add([]byte(validYAML))
	for _, name := range []string{"choria-exec-timer.yaml", "choria-file.yaml", "choria-schedule.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "name: x\nversoin: 1\n", "transitions:\n  - name: a\n    form: [x]\n",
		"watchers:\n  - name: a\n    type: probe\n    interval: soon\n",
		"watchers:\n  - name: a\n    type: probe\n    properties:\n      [1, 2]: x\n",
		"name: a\n---\nname: b\n", "a: &a [*a]\n", "watchers:\n  - properties: {a: .inf}\n",
		"watchers:\n  - properties: {a: !!binary aGk=}\n", "watchers:\n  - properties: {a: 2001-12-14t21:59:43.10-05:00}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		def, err := Parse(b)
		if err != nil {
			if def != nil {
				t.Fatalf("Parse() = %v, %v: non-nil definition with an error", def, err)
			}
			return
		}
		_ = def.States()
		if err := def.Validate(); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Validate() = %v, does not wrap ErrInvalid", err)
		}
	})
}

// TestWatcherBuiltInGo checks the compiled-in path: a watcher whose New
// builds its configuration is validated like a decoded one, may not also
// carry properties, and gets a new value on every build.
func TestWatcherBuiltInGo(t *testing.T) {
	def, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	w := &def.Watchers[0]
	w.Properties = nil
	w.New = func() watchers.Watcher { return &probe{Key: "from-go"} }
	built, err := def.BuildWatchers()
	if err != nil {
		t.Fatalf("BuildWatchers() = %v", err)
	}
	if p := built[0].(*probe); p.Key != "from-go" {
		t.Errorf("built watcher = %+v, want the one New returned", p)
	}
	again, _ := def.BuildWatchers()
	if again[0] == built[0] {
		t.Error("two builds share one watcher value")
	}
	w.New = func() watchers.Watcher { return &probe{Key: "k", Reject: true} }
	if err := def.Validate(); err == nil || !strings.Contains(err.Error(), "rejected on request") {
		t.Errorf("Validate(New returning an invalid config) = %v, want its Validate error", err)
	}
	w.New = func() watchers.Watcher { return &probe{Key: "k"} }
	w.Properties = []byte(`{"key":"k"}`)
	if err := def.Validate(); err == nil || !strings.Contains(err.Error(), "takes no properties") {
		t.Errorf("Validate(New and properties) = %v, want a refusal", err)
	}
}
