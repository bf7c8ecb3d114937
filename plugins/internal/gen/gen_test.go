package gen_test

import (
	"bytes"
	"errors"
	"go/format"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/plugins/internal/gen"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []gen.Plugin
	}{
		{"empty file", "", nil},
		{"only comments", "# nothing compiled in\n", nil},
		{"null document", "~\n", nil},
		{"sorted by name", "timer: github.com/mms-io/mms/watchers/timer\n# a comment\nexec: github.com/mms-io/mms/watchers/exec\n", []gen.Plugin{
			{Name: "exec", ImportPath: "github.com/mms-io/mms/watchers/exec", Line: 3},
			{Name: "timer", ImportPath: "github.com/mms-io/mms/watchers/timer", Line: 1},
		}},
		{"quoted and flow style", `{"heart_beat2": 'example.com/mms-heartbeat'}`, []gen.Plugin{
			{Name: "heart_beat2", ImportPath: "example.com/mms-heartbeat", Line: 1},
		}},
		{"internal package of this module", "natsbox: github.com/mms-io/mms/internal/natsbox\n", []gen.Plugin{
			{Name: "natsbox", ImportPath: "github.com/mms-io/mms/internal/natsbox", Line: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gen.Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// badInputs are user_plugins.yaml files Parse rejects, with the exact error.
var badInputs = []struct {
	name string
	in   string
	want string
}{
	{
		// yaml.v3 reports `mapping key "exec" already defined at line 1`
		// only when decoding into a Go map; Parse decodes into a node and
		// says what is wrong in the file's own terms.
		name: "duplicate name",
		in:   "exec: github.com/mms-io/mms/watchers/exec\ntimer: github.com/mms-io/mms/watchers/timer\nexec: example.com/exec\n",
		want: `invalid user_plugins.yaml: line 3: plugin "exec" is listed twice (first at line 1)`,
	},
	{
		name: "duplicate name in flow style",
		in:   "{a: example.com/a, a: example.com/b}",
		want: `invalid user_plugins.yaml: line 1: plugin "a" is listed twice (first at line 1)`,
	},
	{
		name: "duplicate import path",
		in:   "exec: github.com/mms-io/mms/watchers/exec\nshell: github.com/mms-io/mms/watchers/exec\n",
		want: `invalid user_plugins.yaml: line 2: plugin "shell": import path "github.com/mms-io/mms/watchers/exec" is already listed as plugin "exec" (line 1)`,
	},
	{
		name: "every problem reported",
		in:   "Exec: example.com/a\nb: example.com/b/\nb: example.com/c\nd: example.com/c\n",
		want: `invalid user_plugins.yaml: line 1: plugin name "Exec" must match ^[a-z][a-z0-9_]*$
invalid user_plugins.yaml: line 2: plugin "b": malformed import path "example.com/b/": trailing slash
invalid user_plugins.yaml: line 4: plugin "d": import path "example.com/c" is already listed as plugin "b" (line 3)`,
	},
	{"a list, not a map", "- type: exec\n  import: github.com/mms-io/mms/watchers/exec\n",
		`invalid user_plugins.yaml: line 1: want a map of plugin name to Go import path (name: import/path), got a list`},
	{"a scalar, not a map", "github.com/mms-io/mms/watchers/exec\n",
		`invalid user_plugins.yaml: line 1: want a map of plugin name to Go import path (name: import/path), got "github.com/mms-io/mms/watchers/exec"`},
	{"two documents", "a: example.com/a\n---\nb: example.com/b\n",
		`invalid user_plugins.yaml: line 2: more than one YAML document; list every plugin in one map`},
	{"syntax error", "a: example.com/a\n  b: c\n",
		`invalid user_plugins.yaml: yaml: line 2: mapping values are not allowed in this context`},
	{"name with a dash", "heart-beat: example.com/a\n",
		`invalid user_plugins.yaml: line 1: plugin name "heart-beat" must match ^[a-z][a-z0-9_]*$`},
	{"name starting with a digit", "\"1a\": example.com/a\n",
		`invalid user_plugins.yaml: line 1: plugin name "1a" must match ^[a-z][a-z0-9_]*$`},
	{"number as name", "1: example.com/a\n",
		`invalid user_plugins.yaml: line 1: plugin name must be a string, got int 1`},
	{"null as name", "a: example.com/a\nnull: example.com/b\n",
		`invalid user_plugins.yaml: line 2: plugin name must be a string, got null`},
	{"list as name", "? [a]\n: example.com/a\n",
		`invalid user_plugins.yaml: line 1: plugin name must be a string, got a list`},
	{"missing import path", "a: example.com/a\nb:\n",
		`invalid user_plugins.yaml: line 2: plugin "b": import path is missing`},
	{"empty import path", "a: ''\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path is empty`},
	{"number as import path", "a: 12\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path must be a string, got int 12`},
	{"list as import path", "a: [example.com/a]\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path must be a string, got a list`},
	{"alias as import path", "a: &p example.com/a\nb: *p\n",
		`invalid user_plugins.yaml: line 2: plugin "b": import path must be a string, got an alias`},
	{"binary as import path", "a: !!binary ZXhhbXBsZS5jb20vYQ==\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path must be a string, got binary ZXhhbXBsZS5jb20vYQ==`},
	{"absolute path", "a: /src/plugin\n",
		`invalid user_plugins.yaml: line 1: plugin "a": malformed import path "/src/plugin": empty path element`},
	{"relative path", "a: ./plugin\n",
		`invalid user_plugins.yaml: line 1: plugin "a": malformed import path "./plugin": invalid path element "."`},
	{"parent path", "a: example.com/x/../y\n",
		`invalid user_plugins.yaml: line 1: plugin "a": malformed import path "example.com/x/../y": invalid path element ".."`},
	{"space in path", "a: example.com/a b\n",
		`invalid user_plugins.yaml: line 1: plugin "a": malformed import path "example.com/a b": invalid char ' '`},
	{"quote in path", `a: 'example.com/a"b'` + "\n",
		`invalid user_plugins.yaml: line 1: plugin "a": malformed import path "example.com/a\"b": invalid char '"'`},
	{"the plugins package", "a: github.com/mms-io/mms/plugins\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path "github.com/mms-io/mms/plugins" is the plugins package or inside it`},
	{"inside the plugins package", "a: github.com/mms-io/mms/plugins/internal/gen\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path "github.com/mms-io/mms/plugins/internal/gen" is the plugins package or inside it`},
	{"the mms command", "a: github.com/mms-io/mms/cmd/mms\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path "github.com/mms-io/mms/cmd/mms" is a command, not a plugin package`},
	{"another module's internal package", "a: example.com/lib/internal/watch\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path "example.com/lib/internal/watch" is internal to "example.com/lib" and cannot be imported by github.com/mms-io/mms/plugins`},
	{"standard library internal package", "a: internal/poll\n",
		`invalid user_plugins.yaml: line 1: plugin "a": import path "internal/poll" is internal to the standard library`},
	{"too large", "# " + strings.Repeat("x", gen.MaxSize) + "\n",
		`invalid user_plugins.yaml: 65539 bytes is larger than the 65536 byte limit`},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range badInputs {
		t.Run(tt.name, func(t *testing.T) {
			in := short(tt.in)
			got, err := gen.Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %q", in, got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error:\n%s\nwant:\n%s", in, err, tt.want)
			}
			if !errors.Is(err, gen.ErrInvalid) {
				t.Errorf("Parse(%q) error %v does not wrap ErrInvalid", in, err)
			}
			if out, err := gen.Generate([]byte(tt.in)); err == nil {
				t.Errorf("Generate(%q) = %s, want an error", in, out)
			}
		})
	}
}

// short abbreviates long inputs in failure messages.
func short(s string) string {
	if len(s) <= 200 {
		return s
	}
	return s[:200] + "…"
}

const builtins = `exec: github.com/mms-io/mms/watchers/exec
timer: github.com/mms-io/mms/watchers/timer
heartbeat: example.com/mms-heartbeat
`

func TestGenerate(t *testing.T) {
	got, err := gen.Generate([]byte(builtins))
	if err != nil {
		t.Fatalf("Generate(%q) error: %v", builtins, err)
	}
	want := gen.Header + `

package plugins

import (
	_ "example.com/mms-heartbeat"            // heartbeat
	_ "github.com/mms-io/mms/watchers/exec"  // exec
	_ "github.com/mms-io/mms/watchers/timer" // timer
)

// compiledIn lists the entries of user_plugins.yaml compiled into this
// binary, sorted by name.
var compiledIn = []Plugin{
	{Name: "exec", ImportPath: "github.com/mms-io/mms/watchers/exec"},
	{Name: "heartbeat", ImportPath: "example.com/mms-heartbeat"},
	{Name: "timer", ImportPath: "github.com/mms-io/mms/watchers/timer"},
}
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("Generate(%q) mismatch (-want +got):\n%s", builtins, diff)
	}
}

func TestGenerateEmpty(t *testing.T) {
	got, err := gen.Generate([]byte("# nothing\n"))
	if err != nil {
		t.Fatalf("Generate(empty) error: %v", err)
	}
	want := gen.Header + `

package plugins

// compiledIn lists the entries of user_plugins.yaml compiled into this
// binary, sorted by name.
var compiledIn []Plugin
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("Generate(empty) mismatch (-want +got):\n%s", diff)
	}
}

// TestGenerateDeterministic checks that the output depends on the set of
// plugins only: not on the run, the order of the entries, comments, quoting
// or layout.
func TestGenerateDeterministic(t *testing.T) {
	want, err := gen.Generate([]byte(builtins))
	if err != nil {
		t.Fatalf("Generate(%q) error: %v", builtins, err)
	}
	variants := []struct {
		name string
		in   string
	}{
		{"same input", builtins},
		{"reversed", "heartbeat: example.com/mms-heartbeat\ntimer: github.com/mms-io/mms/watchers/timer\nexec: github.com/mms-io/mms/watchers/exec\n"},
		{"comments and quotes", "# header\ntimer: \"github.com/mms-io/mms/watchers/timer\" # t\n\nexec: 'github.com/mms-io/mms/watchers/exec'\nheartbeat: example.com/mms-heartbeat\n"},
		{"flow style", "{heartbeat: example.com/mms-heartbeat, exec: github.com/mms-io/mms/watchers/exec, timer: github.com/mms-io/mms/watchers/timer}"},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			got, err := gen.Generate([]byte(v.in))
			if err != nil {
				t.Fatalf("Generate(%q) error: %v", v.in, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Generate(%q) =\n%s\nwant\n%s", v.in, got, want)
			}
		})
	}
}

func TestSourceOrderIndependent(t *testing.T) {
	ps := []gen.Plugin{
		{Name: "b", ImportPath: "example.com/a"},
		{Name: "a", ImportPath: "example.com/b"},
		{Name: "c", ImportPath: "example.com/c"},
	}
	want, err := gen.Source(ps)
	if err != nil {
		t.Fatalf("Source(%v) error: %v", ps, err)
	}
	rev := []gen.Plugin{ps[2], ps[1], ps[0]}
	got, err := gen.Source(rev)
	if err != nil {
		t.Fatalf("Source(%v) error: %v", rev, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Source(%v) =\n%s\nwant (as for %v)\n%s", rev, got, ps, want)
	}
}

// FuzzGenerate checks that Generate never panics and that whatever it
// accepts becomes valid, formatted Go that imports exactly the listed
// packages and is reproduced byte for byte.
func FuzzGenerate(f *testing.F) {
	f.Add([]byte(builtins))
	f.Add([]byte(""))
	for _, tt := range badInputs {
		if len(tt.in) < 1024 {
			f.Add([]byte(tt.in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		plugins, perr := gen.Parse(in)
		out, err := gen.Generate(in)
		if (perr == nil) != (err == nil) {
			t.Fatalf("Parse(%q) error %v but Generate error %v", in, perr, err)
		}
		if err != nil {
			if !errors.Is(err, gen.ErrInvalid) {
				t.Fatalf("Generate(%q) error %v does not wrap ErrInvalid", in, err)
			}
			return
		}
		file, perr := parser.ParseFile(token.NewFileSet(), "zz_plugins.go", out, parser.ParseComments)
		if perr != nil {
			t.Fatalf("Generate(%q) produced invalid Go: %v\n%s", in, perr, out)
		}
		if formatted, err := format.Source(out); err != nil || !bytes.Equal(formatted, out) {
			t.Fatalf("Generate(%q) output is not gofmt-formatted: %v\n%s", in, err, out)
		}
		if len(file.Imports) != len(plugins) {
			t.Fatalf("Generate(%q) has %d imports, want %d", in, len(file.Imports), len(plugins))
		}
		listed := map[string]bool{}
		for _, p := range plugins {
			listed[p.ImportPath] = true
		}
		for _, imp := range file.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil || !listed[path] || imp.Name == nil || imp.Name.Name != "_" {
				t.Fatalf("Generate(%q) has import %s %s, not a blank import of a listed path", in, imp.Name, imp.Path.Value)
			}
		}
		again, err := gen.Source(plugins)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Source(Parse(%q)) = %s, %v; want the bytes of Generate", in, again, err)
		}
	})
}
