package spec

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

type factsCase struct {
	name string
	in   string
	want map[string]any
	err  string
}

// parseFactsCases is the table for ParseFacts; FuzzParseFacts is seeded from it.
func parseFactsCases() []factsCase {
	return []factsCase{
		{name: "json", in: `{"os":{"family":"debian","release":{"major":12}},"cpus":4,"tags":["a",true,null]}`,
			want: map[string]any{"os": map[string]any{"family": "debian", "release": map[string]any{"major": 12.0}}, "cpus": 4.0, "tags": []any{"a", true, nil}}},
		{name: "yaml", in: "os:\n  family: debian\n  release: {major: 12}\ncpus: 4\nload: 0.5\ntags: [a, true, ~]\n",
			want: map[string]any{"os": map[string]any{"family": "debian", "release": map[string]any{"major": 12}}, "cpus": 4, "load": 0.5, "tags": []any{"a", true, nil}}},
		{name: "yaml keys that are not strings", in: "1: one\ntrue: yes\nnested:\n  2.5: x\n  null: y\n",
			want: map[string]any{"1": "one", "true": "yes", "nested": map[string]any{"2.5": "x", "null": "y"}}},
		{name: "yaml timestamp and binary", in: "built: 2025-01-31T12:00:00Z\nblob: !!binary aGVsbG8=\n",
			want: map[string]any{"built": "2025-01-31T12:00:00Z", "blob": "hello"}},
		{name: "empty", in: " \n", want: map[string]any{}},
		{name: "yaml null", in: "~\n", want: map[string]any{}},
		{name: "json list", in: `[1]`, err: `parse facts: want a JSON object or YAML mapping, got a list`},
		{name: "yaml scalar", in: "debian\n", err: `parse facts: want a JSON object or YAML mapping, got a string`},
		{name: "json syntax", in: "{\n\"a\": }", err: `parse facts: invalid JSON at line 2, column 6: invalid character '}' looking for beginning of value`},
		{name: "json trailing", in: `{"a":1} {}`, err: `parse facts: unexpected data after the JSON object`},
		{name: "yaml duplicate key", in: "a: 1\na: 2\n", err: `parse facts: invalid YAML: line 2: mapping key "a" already defined at line 1`},
		{name: "yaml list key", in: "? [a, b]\n: c\n", err: `parse facts: invalid YAML: invalid map key: []interface {}{"a", "b"}`},
	}
}

func TestParseFacts(t *testing.T) {
	for _, tt := range parseFactsCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFacts([]byte(tt.in))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseFacts(%q) = %v, %v, want error %s", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFacts(%q) err = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseFacts(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLookupFact(t *testing.T) {
	facts := map[string]any{
		"os":    map[string]any{"family": "debian"},
		"disks": []any{map[string]any{"size": 100.0}, "sdb"},
		"nil":   nil,
	}
	tests := []struct {
		path string
		want any
	}{
		{"os.family", "debian"},
		{"os", map[string]any{"family": "debian"}},
		{"disks.0.size", 100.0},
		{"disks.1", "sdb"},
		{"disks.2", nil},
		{"disks.-1", nil},
		{"disks.x", nil},
		{"os.family.x", nil},
		{"nope", nil},
		{"nil.x", nil},
		{"", nil},
		{"os.", nil},
	}
	for _, tt := range tests {
		if got := LookupFact(facts, tt.path); !cmp.Equal(got, tt.want) {
			t.Errorf("LookupFact(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
