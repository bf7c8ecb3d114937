package command

import (
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
)

var splitTests = []struct {
	name string
	in   string
	want []string
	err  string
}{
	{name: "plain", in: "check.sh --fast  -v", want: []string{"check.sh", "--fast", "-v"}},
	{name: "tabs and newlines", in: "a\tb\nc\r\nd", want: []string{"a", "b", "c", "d"}},
	{name: "single quotes keep everything", in: `echo 'a "b" \n $X'`, want: []string{"echo", `a "b" \n $X`}},
	{name: "double quotes", in: `echo "a 'b' \"c\" \\ \$X \n"`, want: []string{"echo", `a 'b' "c" \ $X \n`}},
	{name: "empty quoted words", in: `a "" ''`, want: []string{"a", "", ""}},
	{name: "adjacent parts join", in: `a"b"'c'\ d`, want: []string{"abc d"}},
	{name: "backslash escapes outside quotes", in: `a\ b \'c\"`, want: []string{"a b", `'c"`}},
	{name: "line continuation", in: "a \\\nb", want: []string{"a", "b"}},
	{name: "line continuation in double quotes", in: "\"a\\\nb\"", want: []string{"ab"}},
	{name: "nothing expanded", in: "ls $HOME ~ *.go", want: []string{"ls", "$HOME", "~", "*.go"}},
	{name: "quoted operator passes", in: `grep '|' "&&" \;`, want: []string{"grep", "|", "&&", ";"}},
	{name: "operator inside a word passes", in: "grep a|b 2>x", want: []string{"grep", "a|b", "2>x"}},
	{name: "blank", in: " \t\n", err: "no words"},
	{name: "empty", in: "", err: "no words"},
	{name: "unterminated single", in: "echo 'abc", err: "unterminated single quote at offset 5"},
	{name: "unterminated double", in: `echo "abc`, err: "unterminated double quote at offset 5"},
	{name: "trailing backslash", in: `echo \`, err: "trailing backslash"},
	{name: "pipe", in: "check.sh | grep x", err: `shell operator "|": commands run without a shell; quote it to pass it literally, or run sh -c '…'`},
	{name: "redirect", in: "check.sh > /tmp/x", err: `shell operator ">": commands run without a shell; quote it to pass it literally, or run sh -c '…'`},
	{name: "and", in: "a && b", err: `shell operator "&&": commands run without a shell; quote it to pass it literally, or run sh -c '…'`},
}

func TestSplitWords(t *testing.T) {
	for _, tt := range splitTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Split(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Split(%q) err = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%q) err = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Split(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// quoteWord quotes w so that Split returns it unchanged.
func quoteWord(w string) string {
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// FuzzSplitWords checks that splitting never panics, and that quoting the
// words it returns and splitting again gives the same words.
func FuzzSplitWords(f *testing.F) {
	for _, tt := range splitTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		words, err := Split(in)
		if err != nil {
			if len(words) != 0 {
				t.Fatalf("Split(%q) = %q with error %v", in, words, err)
			}
			return
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = quoteWord(w)
		}
		again, err := Split(strings.Join(quoted, " "))
		if err != nil {
			t.Fatalf("Split(quoted %q) err = %v", words, err)
		}
		if diff := cmp.Diff(words, again); diff != "" {
			t.Fatalf("split, quote, split of %q differs (-first +second):\n%s", in, diff)
		}
	})
}

func TestCheckLine(t *testing.T) {
	o := template.FuncMap{"o": func(string, any) string { return "" }}
	tests := []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{name: "literal is split", in: "check.sh -v", want: []string{"check.sh", "-v"}},
		{name: "literal shell operator", in: "a | b", err: "shell operator"},
		{name: "template is parsed, not split", in: "check.sh {{ .Identity }} |", want: nil},
		{name: "template syntax", in: "check.sh {{ .Identity", err: "unclosed action"},
		{name: "unknown function", in: `check.sh {{ o "k" 1 }}`, err: `function "o" not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckLine(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("CheckLine(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("CheckLine(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
	if _, err := CheckLine(`check.sh {{ o "k" 1 }}`, o); err != nil {
		t.Errorf("CheckLine with the watcher's function o: %v", err)
	}
}
