package termtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

var escapeTests = []struct {
	name, in, want string
}{
	{"plain", "web1 exec check failure: exit 2", "web1 exec check failure: exit 2"},
	{"empty", "", ""},
	{"utf-8 text kept", "café → naïve 日本 ✓", "café → naïve 日本 ✓"},
	{"backslash kept", `C:\machines\web`, `C:\machines\web`},
	{"colour", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
	{"clear screen", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
	{"window title (OSC, BEL)", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
	{"carriage return overwrite", "ok\rFAIL", `ok\rFAIL`},
	{"newline, tab", "a\nb\tc", `a\nb\tc`},
	{"backspace, DEL, NUL", "a\bb\x7fc\x00", `a\x08b\x7fc\x00`},
	{"C1 CSI", "x\u009b31my", `x\u009b31my`},
	{"bidi override", "evil\u202eexe.txt", `evil\u202eexe.txt`},
	{"bidi isolate", "a\u2066b\u2069", `a\u2066b\u2069`},
	{"zero width, BOM", "we\u200bb\ufeff", `we\u200bb\ufeff`},
	{"line separator", "a\u2028b", `a\u2028b`},
	{"invalid utf-8", "a\xffb\xc3", `a\xffb\xc3`},
}

func TestEscape(t *testing.T) {
	for _, tt := range escapeTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Escape(tt.in); got != tt.want {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzEscape(f *testing.F) {
	for _, tt := range escapeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Escape(%q) = %q, not UTF-8", s, got)
		}
		for _, r := range got {
			if actsOn(r) {
				t.Fatalf("Escape(%q) = %q keeps %U", s, got, r)
			}
		}
		if firstUnsafe(s) < 0 && got != s {
			t.Fatalf("Escape(%q) = %q, changed safe text", s, got)
		}
		if !strings.ContainsFunc(s, func(r rune) bool { return r == utf8.RuneError || actsOn(r) }) && got != s {
			t.Fatalf("Escape(%q) = %q, changed text without anything to escape", s, got)
		}
		if Escape(got) != got {
			t.Fatalf("Escape(Escape(%q)) changed again", s)
		}
	})
}
