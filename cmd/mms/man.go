package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// sourceDateEpoch is the variable of reproducible builds that fixes the
// date a build writes into its outputs
// (https://reproducible-builds.org/specs/source-date-epoch/).
const sourceDateEpoch = "SOURCE_DATE_EPOCH"

func (a *app) newManCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "man --dir DIR",
		Short: "Write a man page for every mms command",
		Long: `Write a man page in section 1 for mms and for every command under it
(mms-pack.1, mms-governor-add.1, ...) into DIR, created if missing; pages
already there are replaced. The pages are this binary's --help text: its
descriptions, flags with their defaults, and examples.

The output depends only on the binary: the date in each page's header is
the build's commit date (see 'mms version'), or the time in
$SOURCE_DATE_EPOCH (seconds since 1970) when that is set, and it is left
empty when neither is known. Release archives carry the pages; with 'go
install', write them yourself:

  mms man --dir ~/.local/share/man/man1
  man mms-pack`,
		Example: `  sudo mms man --dir /usr/local/share/man/man1 && man mms-put
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) mms man --dir dist/man`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			header, err := manHeader(currentBuild(), os.Getenv(sourceDateEpoch))
			if err != nil {
				return err
			}
			n, err := a.writeManPages(dir, header)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "wrote %d man pages to %s\n", n, dir)
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the pages into (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// manHeader is the header of every page: section 1, the mms version as the
// source, and the date from epoch ($SOURCE_DATE_EPOCH) if set, else the
// build's commit date, else none (nil).
func manHeader(b buildInfo, epoch string) (*doc.GenManHeader, error) {
	h := &doc.GenManHeader{Section: "1", Source: "mms " + b.Version, Manual: "mms manual"}
	if epoch != "" {
		secs, err := strconv.ParseInt(strings.TrimSpace(epoch), 10, 64)
		if err != nil || secs < 0 {
			return nil, fmt.Errorf("read $%s %q: want a number of seconds since 1970", sourceDateEpoch, epoch)
		}
		date := time.Unix(secs, 0).UTC()
		h.Date = &date
	} else if t, err := time.Parse(time.RFC3339, b.Date); err == nil {
		date := t.UTC()
		h.Date = &date
	}
	return h, nil
}

// writeManPages writes the page of every available command of a fresh
// command tree (so rewriting its help for roff changes nothing else) into
// dir and returns how many it wrote.
func (a *app) writeManPages(dir string, header *doc.GenManHeader) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create the man page directory: %w", err)
	}
	root := a.rootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var cmds []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		cmds = append(cmds, c)
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() && !sub.IsAdditionalHelpTopicCommand() {
				walk(sub)
			}
		}
	}
	walk(root)
	seen := map[*pflag.Flag]bool{}
	for _, c := range cmds {
		c.DisableAutoGenTag = true
		// cobra's completion commands are written in markdown already.
		if c.Name() == "completion" || c.HasParent() && c.Parent().Name() == "completion" {
			continue
		}
		c.Short, c.Long = manText(c.Short), manText(c.Long)
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if !seen[f] {
					seen[f] = true
					// A `word` names the flag's value in --help; here it
					// is only the word.
					f.Usage = manText(strings.ReplaceAll(f.Usage, "`", ""))
				}
			})
		}
	}
	for _, c := range cmds {
		h := *header
		if h.Date == nil {
			// cobra would write today; a page without a known date has none.
			h.Date = &time.Time{}
		}
		var page bytes.Buffer
		if err := doc.GenMan(c, &h, &page); err != nil {
			return 0, fmt.Errorf("write the man page of %s: %w", c.CommandPath(), err)
		}
		text := page.String()
		if header.Date == nil {
			text = strings.Replace(text, fmt.Sprintf(" %q ", h.Date.Format("Jan 2006")), ` "" `, 1)
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(roffASCII(text)), 0o644); err != nil {
			return 0, fmt.Errorf("write the man page of %s: %w", c.CommandPath(), err)
		}
	}
	return len(cmds), nil
}

// roffASCII writes every character outside ASCII (…, →, ×) as a roff
// escape, \[uXXXX], which groff and mandoc print as that character
// whatever the locale.
func roffASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\[u%04X]`, r)
		}
	}
	return b.String()
}

// manText turns the plain text of a --help description into the markdown
// that cobra's man page generator expects: prose stays prose (markdown's
// special characters escaped, so a * or an _ prints as itself), and every
// run of indented lines (command examples, tables, lists of values)
// becomes a code block, printed as it is, line by line.
func manText(s string) string {
	var b strings.Builder
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		if !indented(lines[i]) {
			b.WriteString(mdSpecial.ReplaceAllString(lines[i], `\$0`))
			b.WriteString("\n")
			continue
		}
		j := i
		for j < len(lines) && (indented(lines[j]) || strings.TrimSpace(lines[j]) == "" && j+1 < len(lines) && indented(lines[j+1])) {
			j++
		}
		b.WriteString("\n```\n")
		for _, l := range lines[i:j] {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n\n")
		i = j - 1
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// indented reports whether a line of help text starts with white space.
func indented(line string) bool {
	return strings.TrimSpace(line) != "" && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"))
}

// mdSpecial matches the characters markdown may read as markup.
var mdSpecial = regexp.MustCompile("[\\\\`*_{}\\[\\]<>#|~]")
