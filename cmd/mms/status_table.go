package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
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

// appliedCell is the APPLIED column: the serial (or v1 digest), "never"
// when the node never applied a spec, "-" before its manager reported.
func appliedCell(d *nodestatus.Document) string {
	switch {
	case d.Applied != nil:
		return compactLabel(d.Applied.Format, d.Applied.Serial, d.Applied.Digest)
	case d.Seen != nil:
		return "never"
	}
	return "-"
}

// seenCell is the SEEN column: empty when the node applied the spec it saw
// last, else that spec and what became of it ("4000 ignored-older").
func seenCell(d *nodestatus.Document) string {
	s := d.Seen
	if s == nil || (s.Outcome == nodestatus.SeenApplied && d.Applied != nil && s.Digest == d.Applied.Digest) {
		return ""
	}
	if label := compactLabel(s.Format, s.Serial, s.Digest); label != "" {
		return label + " " + s.Outcome
	}
	return s.Outcome
}

// compactLabel names a spec in a table cell: its serial, "v1 <digest>", or
// the digest.
func compactLabel(format string, serial uint64, digest string) string {
	switch {
	case format == "v1":
		return "v1 " + shortHex(digest)
	case serial > 0:
		return fmt.Sprint(serial)
	}
	return shortHex(digest)
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
		d := n.Doc
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Escape(d.Identity), termtext.Escape(appliedCell(d)), termtext.Escape(seenCell(d)),
			termtext.Escape(machinesSummary(d.Machines)), message(n), fleet.Age(n.Age), flagNames(n))
	}
	tw.Flush()
	for _, n := range nodes {
		if n.Doc == nil {
			a.log.Warn("unreadable status document", "key", n.Key, "error", n.Err)
		}
	}
}

// printNode prints one agent in full: who, trust, the applied and seen
// spec, every entry, every machine and every problem.
func printNode(a *app, n fleet.Node, now time.Time) {
	if n.Doc == nil {
		fmt.Fprintf(a.stdout, "%s: the status document cannot be read: %s\n", termtext.Escape(n.Key), termtext.Escape(fmt.Sprint(n.Err)))
		return
	}
	d := n.Doc
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", label, termtext.Escapef(format, args...))
	}
	line("Identity", "%s", d.Identity)
	line("Agent", "mms %s, started %s, updated %s ago (every %s)", d.AgentVersion, d.StartedAt.Format(time.RFC3339), fleet.Age(now.Sub(d.UpdatedAt)), cmp.Or(d.Heartbeat, "?"))
	if !d.StoppedAt.IsZero() {
		line("Stopped", "%s (%s ago)", d.StoppedAt.Format(time.RFC3339), fleet.Age(now.Sub(d.StoppedAt)))
	}
	line("Trusts", "%s", trustLine(d.Trust))
	switch {
	case d.Applied != nil:
		ap := d.Applied
		desc := fmt.Sprintf("%s (%s, digest %s)", ap.Label(), cmp.Or(ap.Format, "?"), shortHex(ap.Digest))
		if !ap.AcceptedAt.IsZero() {
			desc += ", accepted " + ap.AcceptedAt.Format(time.RFC3339)
		}
		if ap.Stale {
			desc += ", EXPIRED (still running it)"
		}
		line("Applied", "%s", desc)
	case d.Seen != nil:
		line("Applied", "never applied a spec")
	default:
		line("Applied", "not reported yet (the manager has not finished its first pass)")
	}
	if s := d.Seen; s != nil {
		desc := s.Problem()
		if s.Outcome == nodestatus.SeenApplied && len(d.Failed()) > 0 {
			desc = s.Label() + " " + s.Outcome // the entries below say what failed
		}
		if !s.At.IsZero() {
			desc += fmt.Sprintf(" (%s ago)", fleet.Age(now.Sub(s.At)))
		}
		line("Seen", "%s", desc)
	}
	line("NATS", "%s", natsLine(d))
	if d.LastError != "" {
		line("Last error", "%s (%s ago)", d.LastError, fleet.Age(now.Sub(d.LastErrorAt)))
	}
	line("Flags", "%s", cmp.Or(flagNames(n), "none"))
	tw.Flush()

	states := map[string]string{}
	for _, m := range d.Machines {
		states[m.Name] = m.State
	}
	if len(d.Entries) > 0 {
		fmt.Fprintln(a.stdout)
		tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENTRY\tOUTCOME\tVERSION\tSTATE\tCHECKSUM\tREASON")
		for _, e := range d.Entries {
			reason := e.Reason
			if e.Download != nil {
				reason = fleet.DownloadLine(e.Download)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Escape(e.Name), termtext.Escape(e.State()), termtext.Escape(e.Version),
				termtext.Escape(states[e.Name]), termtext.Escape(shortHex(e.Checksum)), termtext.Escape(reason))
		}
		tw.Flush()
	}
	if len(d.Machines) > 0 {
		fmt.Fprintln(a.stdout)
		tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MACHINE\tVERSION\tSTATE\tLAST OUTCOME\tERRORS")
		for _, m := range d.Machines {
			state := cmp.Or(m.State, "not running")
			if m.CompiledIn {
				state += " (compiled in)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", termtext.Escape(m.Name), termtext.Escape(m.Version), termtext.Escape(state),
				termtext.Escape(m.LastOutcome), termtext.Escape(m.LastError))
		}
		tw.Flush()
	}
	if details := n.Problems(); len(details) > 0 {
		fmt.Fprintln(a.stdout)
		fmt.Fprintln(a.stdout, "Problems:")
		for _, p := range details {
			fmt.Fprintln(a.stdout, "  "+termtext.Escape(p))
		}
	}
}

// trustLine describes a node's trust policy.
func trustLine(t *nodestatus.Trust) string {
	switch {
	case t == nil:
		return "not reported (an older agent)"
	case t.Unsigned:
		return "ANY spec: signatures are not checked (--insecure-unsigned)"
	}
	ids := make([]string, len(t.KeyIDs))
	for i, id := range t.KeyIDs {
		ids[i] = shortHex(id)
	}
	s := fmt.Sprintf("%d of key%s %s", t.Threshold, plural(len(ids)), strings.Join(ids, ", "))
	if t.AllowV1 {
		s += "; v1 specs allowed"
	}
	return s
}

// natsLine describes a node's NATS connection.
func natsLine(d *nodestatus.Document) string {
	n := d.NATS
	s := "disconnected"
	if n.Connected {
		s = "connected"
	}
	if n.URL != "" {
		s += " to " + n.URL
	}
	if n.Reconnects > 0 {
		s += fmt.Sprintf(", %d reconnect%s", n.Reconnects, plural(n.Reconnects))
	}
	if len(n.PermissionViolations) > 0 {
		s += fmt.Sprintf(", %d permission violation%s", len(n.PermissionViolations), plural(len(n.PermissionViolations)))
	}
	return s
}

// machinesSummary counts machines per state: "3 (RUN 2, MANAGE 1)".
func machinesSummary(ms []nodestatus.Machine) string {
	if len(ms) == 0 {
		return "0"
	}
	counts := map[string]int{}
	for _, m := range ms {
		counts[cmp.Or(m.State, "not running")]++
	}
	states := make([]string, 0, len(counts))
	for s := range counts {
		states = append(states, s)
	}
	slices.SortFunc(states, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%s %d", s, counts[s])
	}
	return fmt.Sprintf("%d (%s)", len(ms), strings.Join(parts, ", "))
}

// shortHex abbreviates a digest or checksum to 12 characters.
func shortHex(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
