package command

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
)

// renderer renders with facts v (a string) and list (a list).
func renderer(v string) *render.Renderer {
	return render.NewRenderer(watchers.Deps{Identity: "web1", Facts: func() map[string]any {
		return map[string]any{"v": v, "list": []any{"a b", "c"}, "n": 3}
	}})
}

var renderLineTests = []struct {
	name, line, value string
	want              []string
	err               string
}{
	{name: "a value with blanks is one word", line: `./check.sh {{ .Facts.v }} --fast`, value: "1 --output=/etc/passwd",
		want: []string{"./check.sh", "1 --output=/etc/passwd", "--fast"}},
	{name: "quotes in a value do not close anything", line: `./check.sh {{ lookup "facts.v" "" }}`, value: `a' "b c" 'd --output=/etc/passwd \`,
		want: []string{"./check.sh", `a' "b c" 'd --output=/etc/passwd \`}},
	{name: "part of a word", line: `./check.sh --name={{ .Facts.v }}`, value: "x y; rm -rf /",
		want: []string{"./check.sh", "--name=x y; rm -rf /"}},
	{name: "within double quotes", line: `./check.sh "at {{ .Facts.v }} now"`, value: "\" $HOME `id` \\ \n",
		want: []string{"./check.sh", "at \" $HOME `id` \\ \n now"}},
	{name: "within single quotes", line: `./check.sh 'at {{ .Facts.v }}'`, value: `it's 'quoted'`,
		want: []string{"./check.sh", `at it's 'quoted'`}},
	{name: "an empty value is an empty word", line: `./check.sh {{ .Facts.v }} x`, value: "",
		want: []string{"./check.sh", "", "x"}},
	{name: "a shell operator in a value is a word", line: `./check.sh {{ .Facts.v }}`, value: "|",
		want: []string{"./check.sh", "|"}},
	{name: "not a string", line: `./check.sh {{ .Facts.n }}`, want: []string{"./check.sh", "3"}},
	{name: "the template's own text splits as usual", line: `./check.sh {{ if .Facts.v }}--v {{ .Facts.v }}{{ end }} -x`, value: "a b",
		want: []string{"./check.sh", "--v", "a b", "-x"}},
	{name: "a range gives one word per item", line: `./check.sh {{ range .Facts.list }}{{ . }} {{ end }}`,
		want: []string{"./check.sh", "a b", "c"}},
	{name: "a variable prints nothing", line: `./check.sh {{ $x := .Facts.v }}{{ $x }}`, value: "a b",
		want: []string{"./check.sh", "a b"}},
	{name: "a branch that opens a quote", line: `./check.sh {{ if .Facts.v }}"{{ end }}x"`, value: "1",
		err: "a branch of {{if}}, {{with}} or {{range}} leaves a quote open"},
	{name: "an action after a backslash", line: `./check.sh \{{ .Facts.v }}`, value: "1",
		err: "a template action right after a backslash"},
}

func TestRenderLine(t *testing.T) {
	for _, tt := range renderLineTests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := CheckLine(tt.line); (err != nil) != (tt.err != "") {
				t.Errorf("CheckLine(%q) = %v, want an error: %v", tt.line, err, tt.err != "")
			}
			got, shown, err := RenderLine(renderer(tt.value), tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("RenderLine(%q) = %q, %v; want an error with %q", tt.line, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("RenderLine(%q) with %q (-want +got):\n%s", tt.line, tt.value, diff)
			}
			if back, err := Split(shown); err != nil || !cmp.Equal(back, got) {
				t.Errorf("Split(%q) = %q, %v; want the words back", shown, back, err)
			}
		})
	}
}

// FuzzRenderLine: whatever a fact holds, it is exactly one word, or part
// of exactly one, wherever the template puts it.
func FuzzRenderLine(f *testing.F) {
	for _, tt := range renderLineTests {
		f.Add(tt.value)
	}
	contexts := []struct {
		line string
		want func(v string) []string
	}{
		{`cmd {{ .Facts.v }} end`, func(v string) []string { return []string{"cmd", v, "end"} }},
		{`cmd --o={{ .Facts.v }}`, func(v string) []string { return []string{"cmd", "--o=" + v} }},
		{`cmd "a {{ .Facts.v }} b"`, func(v string) []string { return []string{"cmd", "a " + v + " b"} }},
		{`cmd 'a {{ .Facts.v }} b' c`, func(v string) []string { return []string{"cmd", "a " + v + " b", "c"} }},
		{`cmd {{ .Facts.v }}{{ .Facts.v }}`, func(v string) []string { return []string{"cmd", v + v} }},
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, c := range contexts {
			got, shown, err := RenderLine(renderer(v), c.line)
			if err != nil {
				t.Fatalf("RenderLine(%q) with %q: %v", c.line, v, err)
			}
			if want := c.want(v); !cmp.Equal(got, want) {
				t.Fatalf("RenderLine(%q) with %q = %q, want %q", c.line, v, got, want)
			}
			if back, err := Split(shown); err != nil || !cmp.Equal(back, got) {
				t.Fatalf("Split(Join(%q)) = %q, %v", got, back, err)
			}
		}
	})
}
