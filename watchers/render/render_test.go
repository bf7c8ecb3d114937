package render

import (
	"fmt"
	"strings"
	"testing"
	"text/template"

	"github.com/mms-io/mms/watchers/watchertest"
)

func TestString(t *testing.T) {
	d := watchertest.Deps(t)
	d.Identity, d.Machine, d.Watcher = "web1.example.net", "facts", "spec"
	if err := d.Data.Put("MACHINES_spec", map[string]any{"env": "prod", "tags": []any{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	data := FromDeps(d)
	tests := []struct {
		name, in, want, err string
	}{
		{name: "literal", in: "nodes.web1", want: "nodes.web1"},
		{name: "identity", in: "nodes.{{ .Identity }}", want: "nodes.web1.example.net"},
		{name: "machine and watcher", in: "{{ .Machine }}/{{ .Watcher }}", want: "facts/spec"},
		{name: "facts by dot", in: "{{ .Facts.os.family }}", want: "linux"},
		{name: "lookup a fact", in: `{{ lookup "facts.os.family" "x" }}`, want: "linux"},
		{name: "lookup data", in: `{{ lookup "data.MACHINES_spec.env" "dev" }}`, want: "prod"},
		{name: "lookup default", in: `{{ lookup "facts.nope" "dflt" }}`, want: "dflt"},
		{name: "functions", in: `{{ lookup "facts.os.family" "" | ToUpper }}-{{ "mIxEd" | ToLower }}-{{ "web node" | Title }}`, want: "LINUX-mixed-Web Node"},
		{name: "join", in: `{{ lookup "data.MACHINES_spec.tags" "" | StringsJoin }}`, want: "a, b"},
		{name: "base64", in: `{{ "hi" | Base64Encode }} {{ "aGk=" | Base64Decode }}`, want: "aGk= hi"},
		{name: "missing map key", in: "{{ .Facts.nope }}", err: `map has no entry for key "nope"`},
		{name: "unknown field", in: "{{ .Hostname }}", err: "can't evaluate field Hostname"},
		{name: "bad base64", in: `{{ "!" | Base64Decode }}`, err: "illegal base64 data"},
		{name: "join a string", in: `{{ "x" | StringsJoin }}`, err: "StringsJoin: want a list, got string"},
		{name: "syntax", in: "{{ .Identity ", err: `template "{{ .Identity ": template: property:1: unclosed action`},
		{name: "unknown function", in: "{{ hostname }}", err: `function "hostname" not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := String(tt.in, data)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("String(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("String(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	for in, ok := range map[string]bool{
		"nodes.{{ .Identity }}":             true,
		`{{ lookup "facts.x" "" }}`:         true,
		"{{ .Identity":                      false,
		"{{ nosuchfunc .Identity }}":        false,
		"{{ .Identity | ToLower | Title }}": true,
	} {
		if err := Check(in); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok %v", in, err, ok)
		}
	}
}

// FuzzString renders arbitrary templates: a template may fail, never panic,
// and one that Check rejects never renders.
func FuzzString(f *testing.F) {
	for _, s := range []string{"nodes.{{ .Identity }}", `{{ lookup "facts.os.family" "x" | ToUpper }}`, `{{ lookup "data.k.0" "" | StringsJoin }}`, "{{ .Facts.os.family }}", "{{", "x"} {
		f.Add(s)
	}
	data := Data{Identity: "n1", Machine: "m", Watcher: "w",
		Facts: map[string]any{"os": map[string]any{"family": "linux"}, "l": []any{"a", 1.0}},
		Data:  map[string]any{"k": []any{[]any{"x"}}}}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := String(s, data)
		if Has(s) && Check(s) != nil && err == nil {
			t.Fatalf("String(%q) = %q, nil; Check rejects it", s, out)
		}
		if !Has(s) && (err != nil || out != s) {
			t.Fatalf("String(%q) = %q, %v; want the text unchanged", s, out, err)
		}
	})
}

func TestRendererReadsDataOnlyForTemplates(t *testing.T) {
	d := watchertest.Deps(t)
	facts := d.Facts
	reads := 0
	d.Facts = func() map[string]any { reads++; return facts() }
	r := NewRenderer(d)
	if got, err := r.String("nodes.web1"); err != nil || got != "nodes.web1" {
		t.Fatalf("String(literal) = %q, %v", got, err)
	}
	if reads != 0 {
		t.Fatalf("a literal read the facts %d times, want 0", reads)
	}
	for range 2 {
		if got, err := r.String(`{{ lookup "facts.os.family" "x" }}`); err != nil || got != "linux" {
			t.Fatalf("String(template) = %q, %v", got, err)
		}
	}
	if reads != 1 {
		t.Fatalf("two templates read the facts %d times, want 1", reads)
	}
}

func TestRendererExtraFunctions(t *testing.T) {
	r := NewRenderer(watchertest.Deps(t), template.FuncMap{"o": func(_ string, dflt any) string { return fmt.Sprint(dflt) }})
	if got, err := r.String(`{{ o "k" 5 }}-{{ .Identity }}`); err != nil || got != "5-node.example.net" {
		t.Fatalf("String = %q, %v; want %q", got, err, "5-node.example.net")
	}
}
