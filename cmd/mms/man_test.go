package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestManPages runs `mms man --dir` of the real binary and checks the pages
// against the command tree: one page per command (help and hidden ones
// aside), each with the header of $SOURCE_DATE_EPOCH, its short
// description, every word of its long description in order, every indented
// line of it (examples, tables) and every example line kept as it is in a
// no-fill block, and every flag; all ASCII, and the same bytes when run
// again. Where groff is installed, the pages must format without a warning.
func TestManPages(t *testing.T) {
	bin := mmsBinary(t)
	const epoch = "1764547200" // 2025-12-01
	man := func(dir string) string {
		t.Helper()
		cmd := exec.Command(bin, "man", "--dir", dir)
		cmd.Env = append(os.Environ(), sourceDateEpoch+"="+epoch)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("mms man --dir %s: %v\n%s", dir, err, stderr.String())
		}
		return stdout.String()
	}
	dir := filepath.Join(t.TempDir(), "man", "man1")
	out := man(dir)

	cmds := manCommands(t)
	var want []string
	for _, c := range cmds {
		want = append(want, manName(c))
	}
	for _, name := range []string{"mms.1", "mms-pack.1", "mms-governor-add.1", "mms-machine-transition.1", "mms-man.1", "mms-completion-bash.1"} {
		if !slices.Contains(want, name) {
			t.Fatalf("the command tree has no %s (pages it lists: %q)", name, want)
		}
	}
	if wantOut := fmt.Sprintf("wrote %d man pages to %s\n", len(want), dir); out != wantOut {
		t.Errorf("mms man printed %q, want %q", out, wantOut)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("man pages (-one per command +written):\n%s", diff)
	}

	header := regexp.MustCompile(`\A\.nh\n\.TH "([A-Z-]+)" "1" "Dec 2025" "mms [^"]+" "mms manual"\n`)
	for _, c := range cmds {
		name := manName(c)
		page := readFile(t, filepath.Join(dir, name))
		m := header.FindStringSubmatch(page)
		if m == nil || m[1] != strings.ToUpper(strings.TrimSuffix(name, ".1")) {
			t.Errorf("%s does not start with the header of %s: %.120q", name, strings.ToUpper(strings.TrimSuffix(name, ".1")), page)
			continue
		}
		for i, r := range page {
			if r >= 0x80 {
				t.Errorf("%s: character %q at byte %d is not ASCII (roff wants \\[uXXXX])", name, r, i)
				break
			}
		}
		text := unroff(page)
		if !strings.Contains(text, manName(c)[:len(manName(c))-2]+" - "+c.Short) {
			t.Errorf("%s: no NAME line %q in\n%s", name, manName(c)[:len(manName(c))-2]+" - "+c.Short, text)
		}
		c.InitDefaultHelpFlag()
		for _, flag := range manFlagNames(c) {
			if !strings.Contains(page, `\fB--`+flag+`\fP`) {
				t.Errorf("%s: flag --%s is missing", name, flag)
			}
		}
		if isCompletion(c) {
			continue // cobra's own text, in markdown
		}
		blocks := noFillLines(page)
		prose := strings.Fields(text)
		var long []string
		for line := range strings.Lines(c.Long) {
			line = strings.TrimRight(line, "\n")
			if indented(line) {
				if !blocks[line] {
					t.Errorf("%s: the description's line %q is not kept as it is in a no-fill block", name, line)
				}
				continue
			}
			long = append(long, line)
		}
		if rest, ok := subsequence(strings.Fields(strings.Join(long, " ")), prose); !ok {
			t.Errorf("%s: the description's words from %q on are missing or out of order in\n%s", name, strings.Join(rest, " "), text)
		}
		for line := range strings.Lines(c.Example) {
			if line = strings.TrimRight(line, "\n"); line != "" && !blocks[line] {
				t.Errorf("%s: the example line %q is not kept as it is in a no-fill block", name, line)
			}
		}
	}

	again := filepath.Join(t.TempDir(), "again")
	man(again)
	for _, name := range want {
		if a, b := readFile(t, filepath.Join(dir, name)), readFile(t, filepath.Join(again, name)); a != b {
			t.Errorf("%s differs between two runs of mms man:\n%s", name, cmp.Diff(a, b))
		}
	}

	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Logf("groff is not installed: the pages were not formatted")
		return
	}
	for _, name := range want {
		out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", filepath.Join(dir, name)).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff -man -ww %s: %v\n%s", name, err, out)
		}
	}
}

// TestManPagesWithoutDate writes the pages with no date known: the
// header's date is empty, never the time of the run.
func TestManPagesWithoutDate(t *testing.T) {
	a := &app{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
	header, err := manHeader(buildInfo{Version: "v1.2.3", Date: "unknown"}, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := a.writeManPages(dir, header); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, filepath.Join(dir, "mms-keys.1")), ".nh\n.TH \"MMS-KEYS\" \"1\" \"\" \"mms v1.2.3\" \"mms manual\"\n"; !strings.HasPrefix(got, want) {
		t.Errorf("mms-keys.1 starts %.80q, want %q", got, want)
	}
}

func TestManHeader(t *testing.T) {
	tests := []struct {
		name      string
		buildDate string
		epoch     string
		want      string // the date, "" for none
		wantErr   string
	}{
		{"epoch", "unknown", "1764547200", "2025-12-01T00:00:00Z", ""},
		{"epoch before the commit date", "2026-11-23T10:00:00+01:00", "1764547200", "2025-12-01T00:00:00Z", ""},
		{"commit date", "2026-11-23T10:00:00+01:00", "", "2026-11-23T09:00:00Z", ""},
		{"none", "unknown", "", "", ""},
		{"bad epoch", "unknown", "soon", "", `read $SOURCE_DATE_EPOCH "soon": want a number of seconds since 1970`},
		{"negative epoch", "unknown", "-1", "", `read $SOURCE_DATE_EPOCH "-1": want a number of seconds since 1970`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := manHeader(buildInfo{Version: "v1.2.3", Date: tt.buildDate}, tt.epoch)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("manHeader = %v, want error %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if h.Date != nil {
				got = h.Date.Format(time.RFC3339)
			}
			if got != tt.want || h.Source != "mms v1.2.3" || h.Section != "1" {
				t.Errorf("manHeader = date %q, source %q, section %q; want date %q, source \"mms v1.2.3\", section 1", got, h.Source, h.Section, tt.want)
			}
		})
	}
}

func TestManText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain words.", "plain words."},
		{"a *b* <c> `d` [e](f) x_y #1", `a \*b\* \<c\> \` + "`" + `d\` + "`" + ` \[e\](f) x\_y \#1`},
		{"Run:\n\n  mms a *b*\n    --c\n\nthen", "Run:\n\n\n```\n  mms a *b*\n    --c\n```\n\n\nthen"},
		{"Users:\n  admin  all\n\n  node   one\nend", "Users:\n\n```\n  admin  all\n\n  node   one\n```\n\nend"},
	}
	for _, tt := range tests {
		if got := manText(tt.in); got != tt.want {
			t.Errorf("manText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// manCommands lists the commands mms man writes a page for: every command
// but help and hidden ones, cobra's completion commands included.
func manCommands(t *testing.T) []*cobra.Command {
	t.Helper()
	a := &app{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, log: slog.New(slog.DiscardHandler)}
	root := a.rootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var cmds []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		cmds = append(cmds, c)
		for _, sub := range c.Commands() {
			if !sub.Hidden && sub.Name() != "help" {
				walk(sub)
			}
		}
	}
	walk(root)
	return cmds
}

func manName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
}

func isCompletion(c *cobra.Command) bool {
	for ; c != nil; c = c.Parent() {
		if c.Name() == "completion" {
			return true
		}
	}
	return false
}

// manFlagNames are the flags a page lists: the command's own and those it
// inherits, hidden ones aside.
func manFlagNames(c *cobra.Command) []string {
	var names []string
	for _, fs := range []*pflag.FlagSet{c.NonInheritedFlags(), c.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Deprecated == "" {
				names = append(names, f.Name)
			}
		})
	}
	return names
}

// roffEscape matches the escapes cobra's pages use.
var roffEscape = regexp.MustCompile(`\\(f[BIPR]|&|-|e|\\|\[u[0-9A-F]{4,6}\])`)

// unroff strips roff from page: requests (lines starting with a dot)
// become blank lines, escapes become the characters they print.
func unroff(page string) string {
	var b strings.Builder
	for line := range strings.Lines(page) {
		if strings.HasPrefix(line, ".") {
			b.WriteString("\n")
			continue
		}
		b.WriteString(unroffLine(line))
	}
	return b.String()
}

func unroffLine(line string) string {
	return roffEscape.ReplaceAllStringFunc(line, func(e string) string {
		switch e {
		case `\-`:
			return "-"
		case `\e`, `\\`:
			return `\`
		case `\&`, `\fB`, `\fI`, `\fP`, `\fR`:
			return ""
		}
		r, err := strconv.ParseUint(e[3:len(e)-1], 16, 32)
		if err != nil {
			return e
		}
		return string(rune(r))
	})
}

// noFillLines returns the lines of page's .EX/.EE blocks, as they print.
func noFillLines(page string) map[string]bool {
	lines := map[string]bool{}
	in := false
	for line := range strings.Lines(page) {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == ".EX":
			in = true
		case line == ".EE":
			in = false
		case in:
			lines[unroffLine(line)] = true
		}
	}
	return lines
}

// subsequence reports whether want appears in have in order; if not, it
// returns the part of want from the first word it could not find.
func subsequence(want, have []string) ([]string, bool) {
	i := 0
	for _, w := range have {
		if i < len(want) && w == want[i] {
			i++
		}
	}
	return want[i:], i == len(want)
}
