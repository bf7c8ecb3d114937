package perfdata

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var parseTests = []struct {
	name   string
	output string
	want   []Item
}{
	{name: "no perfdata", output: "OK: all good"},
	{name: "empty", output: ""},
	{name: "one item", output: "OK: load fine | load1=0.5", want: []Item{{Label: "load1", Value: 0.5}}},
	{name: "full item", output: "DISK OK | /=2643MB;5948;5958;0;5968",
		want: []Item{{Label: "/", Value: 2643, Unit: "MB", Warning: "5948", Critical: "5958", Min: "0", Max: "5968"}}},
	{name: "several with units", output: "PING OK|rta=0.058ms;100.000;500.000;0; pl=0%;20;60;; uptime=3600s c=12c",
		want: []Item{
			{Label: "rta", Value: 0.058, Unit: "ms", Warning: "100.000", Critical: "500.000", Min: "0"},
			{Label: "pl", Value: 0, Unit: "%", Warning: "20", Critical: "60"},
			{Label: "uptime", Value: 3600, Unit: "s"},
			{Label: "c", Value: 12, Unit: "c"},
		}},
	{name: "quoted label with spaces", output: "OK | 'free space'=10GB 'it''s'=1",
		want: []Item{{Label: "free_space", Value: 10, Unit: "GB"}, {Label: "it's", Value: 1}}},
	{name: "quoted label with equals", output: "OK | 'a=b'=3", want: []Item{{Label: "a=b", Value: 3}}},
	{name: "ranges", output: "OK | t=5;@10:20;~:30", want: []Item{{Label: "t", Value: 5, Warning: "@10:20", Critical: "~:30"}}},
	{name: "negative and exponent", output: "OK | a=-1.5 b=2e3 c=+.5", want: []Item{{Label: "a", Value: -1.5}, {Label: "b", Value: 2000}, {Label: "c", Value: 0.5}}},
	{name: "undetermined skipped", output: "UNKNOWN | a=U b=1", want: []Item{{Label: "b", Value: 1}}},
	{name: "junk skipped", output: "OK | noequals =5 a=5x5 b=1", want: []Item{{Label: "b", Value: 1}}},
	{name: "long text perfdata", output: "OK: first | a=1\nlong line one\nlong line two | b=2\nc=3 d=4\n",
		want: []Item{{Label: "a", Value: 1}, {Label: "b", Value: 2}, {Label: "c", Value: 3}, {Label: "d", Value: 4}}},
	{name: "long text only", output: "OK\ndetail | b=2", want: []Item{{Label: "b", Value: 2}}},
	{name: "a second pipe is skipped", output: "OK | a=1 | b=2", want: []Item{{Label: "a", Value: 1}, {Label: "b", Value: 2}}},
	{name: "unterminated quote", output: "OK | 'abc=1 d=2", want: nil},
	{name: "huge number", output: "OK | a=1e999 b=1", want: []Item{{Label: "b", Value: 1}}},
	{name: "crlf", output: "OK | a=1\r\n", want: []Item{{Label: "a", Value: 1}}},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Parse(tt.output)); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.output, diff)
			}
		})
	}
}

func TestParseCapsItems(t *testing.T) {
	out := "OK |" + strings.Repeat(" a=1", MaxItems+10)
	if n := len(Parse(out)); n != MaxItems {
		t.Errorf("Parse(%d items) = %d items, want %d", MaxItems+10, n, MaxItems)
	}
}

// format writes items back as perfdata, quoting every label.
func format(items []Item) string {
	var b strings.Builder
	b.WriteString("OK |")
	for _, it := range items {
		b.WriteString(" '" + strings.ReplaceAll(it.Label, "'", "''") + "'=" + strconv.FormatFloat(it.Value, 'g', -1, 64) + it.Unit)
		b.WriteString(";" + it.Warning + ";" + it.Critical + ";" + it.Min + ";" + it.Max)
	}
	return b.String()
}

// FuzzParse checks that parsing never panics, that every item has a label
// without spaces and a finite value, and that writing the items back and
// parsing again gives the same items.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.output)
	}
	f.Fuzz(func(t *testing.T, out string) {
		items := Parse(out)
		if len(items) > MaxItems {
			t.Fatalf("Parse(%q) = %d items, more than %d", out, len(items), MaxItems)
		}
		for _, it := range items {
			if it.Label == "" || strings.Contains(it.Label, " ") {
				t.Fatalf("Parse(%q) gave label %q", out, it.Label)
			}
		}
		// Thresholds and bounds holding blanks or ';' cannot be written
		// back as one item; the rest must survive a round trip.
		var clean []Item
		for _, it := range items {
			if strings.ContainsAny(it.Warning+it.Critical+it.Min+it.Max+it.Label, " \t\r\n;|") {
				continue
			}
			clean = append(clean, it)
		}
		again := Parse(format(clean))
		if diff := cmp.Diff(clean, again); diff != "" {
			t.Fatalf("round trip of Parse(%q) differs (-first +again):\n%s", out, diff)
		}
	})
}
