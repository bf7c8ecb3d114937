package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
)

// flagNames returns the names of a node's flags, comma-separated.
func flagNames(n fleet.Node) string { return strings.Join(n.FlagNames(), ",") }

// maxMessage caps the MESSAGE column, in characters.
const maxMessage = 80

// message is a node's first problem in one line for the table.
func message(n fleet.Node) string { return ellipsize(termtext.Escape(n.Message), maxMessage) }

// ellipsize returns s cut to n characters, its last one "…", when it is
// longer.
func ellipsize(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// printStatusTable prints one line per agent.
func printStatusTable(a *app, nodes []fleet.Node) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tAPPLIED\tSEEN\tMACHINES\tMESSAGE\tAGE\tFLAGS")
	for _, n := range nodes {
		if n.Doc == nil {
			fmt.Fprintf(tw, "%s\t-\t\t-\t%s\t-\t%s\n", termtext.Escape(n.Key), message(n), flagNames(n))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Escape(n.Doc.Identity), termtext.Escape(n.AppliedCell()), termtext.Escape(n.SeenCell()),
			termtext.Escape(n.MachinesCell()), message(n), fleet.Age(n.Age), flagNames(n))
	}
	tw.Flush()
	for _, n := range nodes {
		switch {
		case n.Doc != nil:
		case slices.ContainsFunc(n.Flags, func(f fleet.Flag) bool { return f.Name == fleet.FlagForged }):
			a.log.Warn("forged status document: its content is ignored", "key", n.Key, "error", n.Err)
		default:
			a.log.Warn("unreadable status document", "key", n.Key, "error", n.Err)
		}
	}
}

// printNode prints one agent in full: who, trust, the applied and seen
// spec, every entry, every machine and every problem (fleet.Node.Detail).
func printNode(a *app, n fleet.Node, now time.Time) {
	if n.Doc == nil {
		fmt.Fprintf(a.stdout, "%s: the status document cannot be read: %s\n", termtext.Escape(n.Key), termtext.Escape(fmt.Sprint(n.Err)))
		return
	}
	d := n.Detail(now)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, l := range d.Lines {
		fmt.Fprintf(tw, "%s:\t%s\n", l.Label, termtext.Escape(l.Text))
	}
	tw.Flush()
	if len(d.Entries) > 0 {
		fmt.Fprintln(a.stdout)
		tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENTRY\tOUTCOME\tVERSION\tSTATE\tCHECKSUM\tREASON")
		for _, e := range d.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Escape(e.Name), termtext.Escape(e.Outcome), termtext.Escape(e.Version),
				termtext.Escape(e.State), termtext.Escape(e.Checksum), termtext.Escape(e.Reason))
		}
		tw.Flush()
	}
	if len(d.Machines) > 0 {
		fmt.Fprintln(a.stdout)
		tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MACHINE\tVERSION\tSTATE\tLAST OUTCOME\tERRORS")
		for _, m := range d.Machines {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", termtext.Escape(m.Name), termtext.Escape(m.Version), termtext.Escape(m.State),
				termtext.Escape(m.LastOutcome), termtext.Escape(m.Errors))
		}
		tw.Flush()
	}
	if len(d.Problems) > 0 {
		fmt.Fprintln(a.stdout)
		fmt.Fprintln(a.stdout, "Problems:")
		for _, p := range d.Problems {
			fmt.Fprintln(a.stdout, "  "+termtext.Escape(p))
		}
	}
}

// shortHex abbreviates a digest or checksum to 12 characters.
func shortHex(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
