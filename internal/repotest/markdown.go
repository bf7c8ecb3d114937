package repotest

import (
	"bufio"
	"regexp"
	"strings"
	"testing"
)

// Block returns the text of the first sh code block after the line
// heading (for example "## From nothing to a running machine") in the
// markdown text doc, as a reader would paste it. The test fails if there is
// no such heading or block.
func Block(tb testing.TB, doc, heading string) string {
	tb.Helper()
	_, section, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		tb.Fatalf("no %q section", heading)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		tb.Fatalf("section %q has no sh block", heading)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// FirstBlock returns the text of the first sh code block in the markdown
// text doc, wherever it is (the README's top block, before any section).
// The test fails if there is none.
func FirstBlock(tb testing.TB, doc string) string {
	tb.Helper()
	_, block, ok := strings.Cut(doc, "```sh\n")
	if !ok {
		tb.Fatalf("the document has no sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// Commands returns the commands of block, a shell block such as [Block]
// returns: comment and blank lines dropped, a here-document kept with its
// command, a line ending in a backslash joined with the next. The test
// fails if block ends inside a command.
func Commands(tb testing.TB, block string) []string {
	tb.Helper()
	var cmds []string
	var cur strings.Builder
	heredoc := ""
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case heredoc != "":
			cur.WriteString("\n" + line)
			if line == heredoc {
				heredoc = ""
				cmds = append(cmds, cur.String())
				cur.Reset()
			}
			continue
		case cur.Len() == 0 && (strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#")):
			continue
		}
		if cur.Len() > 0 {
			cur.WriteString("\n")
		}
		cur.WriteString(line)
		if m := heredocStart.FindStringSubmatch(line); m != nil {
			heredoc = m[1]
			continue
		}
		if strings.HasSuffix(line, `\`) {
			continue
		}
		cmds = append(cmds, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 || heredoc != "" {
		tb.Fatalf("the block ends inside a command: %q", cur.String())
	}
	return cmds
}

// heredocStart finds the delimiter of a here-document: <<'EOF' or <<EOF.
var heredocStart = regexp.MustCompile(`<<-?\s*'?(\w+)'?`)
