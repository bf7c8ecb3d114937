package main

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// The flags `mms status` puts on a node, in the order it lists them.
const (
	flagForged   = "forged"
	flagInvalid  = "invalid"
	flagRejected = "rejected"
	flagFailed   = "failed"
	flagExpired  = "expired"
	flagBehind   = "behind"
	flagError    = "error"
	flagStale    = "stale"
	flagStopped  = "stopped"
	flagNATS     = "nats"
)

// nodeFlag is one flag and what earned it, in one line.
type nodeFlag struct {
	name, detail string
}

// isProblem reports whether flag fails --check.
func isProblem(flag string) bool { return flag != flagNATS }

// nodeFlags returns the flags of one agent at now: what its document says
// is wrong, how it compares with the current spec cur (nil: unknown), and
// whether it is still writing.
func nodeFlags(r nodeRow, now time.Time, cur *currentSpec, staleAfter time.Duration) []nodeFlag {
	d := r.doc
	if d == nil {
		detail := "the document cannot be read"
		if r.err != nil {
			detail = r.err.Error()
		}
		return []nodeFlag{{flagInvalid, detail}}
	}
	if f, ok := errors.AsType[*nodestatus.ForgedError](r.err); ok {
		// What it says is nobody's: no other flag comes from it.
		return []nodeFlag{{flagForged, f.Error()}}
	}
	var flags []nodeFlag
	if s := d.Seen; s != nil && s.Outcome != nodestatus.SeenApplied && s.Outcome != nodestatus.SeenMissing {
		flags = append(flags, nodeFlag{flagRejected, s.Problem()})
	}
	if failed := failedProblems(d); failed != "" {
		flags = append(flags, nodeFlag{flagFailed, failed})
	}
	if d.Applied != nil && d.Applied.Stale {
		flags = append(flags, nodeFlag{flagExpired, "applied spec " + d.Applied.Label() + " has expired; publish a new one"})
	}
	if cur != nil && behind(d.Applied, cur) {
		runs := "never applied a spec"
		if d.Applied != nil {
			runs = "runs " + d.Applied.Label()
		}
		flags = append(flags, nodeFlag{flagBehind, runs + ", the current spec is " + cur.label()})
	}
	if errs := d.MachineErrors(); len(errs) > 0 {
		flags = append(flags, nodeFlag{flagError, strings.Join(errs, "; ")})
	}
	if !d.StoppedAt.IsZero() {
		flags = append(flags, nodeFlag{flagStopped, "the agent stopped " + age(now.Sub(d.StoppedAt)) + " ago"})
	} else if limit := d.StaleAfter(staleAfter); d.Stale(now, staleAfter) {
		flags = append(flags, nodeFlag{flagStale, fmt.Sprintf("no update for %s (limit %s): the agent stopped or lost NATS", age(now.Sub(d.UpdatedAt)), limit)})
	}
	if v := d.NATS.PermissionViolations; len(v) > 0 {
		flags = append(flags, nodeFlag{flagNATS, "the server denied: " + v[len(v)-1].Message})
	}
	return flags
}

// failedProblems says what became of each failed entry of d (see
// nodestatus.Document.Failed), "; "-separated, or "" when none failed.
func failedProblems(d *nodestatus.Document) string {
	failed := d.Failed()
	parts := make([]string, len(failed))
	for i, e := range failed {
		parts[i] = e.Problem()
	}
	return strings.Join(parts, "; ")
}

// behind reports whether a node running applied (nil: none) runs an older
// spec than cur: a lower serial for v2, another digest (or none) for v1.
func behind(applied *nodestatus.Applied, cur *currentSpec) bool {
	if applied == nil {
		return true
	}
	if cur.format == packer.FormatV1 {
		return applied.Digest != cur.digest
	}
	return applied.Serial < cur.serial
}

// flagNames returns the names of flags, comma-separated.
func flagNames(flags []nodeFlag) string {
	names := make([]string, len(flags))
	for i, f := range flags {
		names[i] = f.name
	}
	return strings.Join(names, ",")
}

// problemDetails returns "flag: detail" for each flag that fails --check.
func problemDetails(flags []nodeFlag) []string {
	var out []string
	for _, f := range flags {
		if isProblem(f.name) {
			out = append(out, f.name+": "+f.detail)
		}
	}
	return out
}

// maxMessage caps the MESSAGE column, in characters.
const maxMessage = 80

// message is a node's first problem in one line for the table: what its
// document says is wrong, else the first flag's reason.
func message(r nodeRow) string {
	var msg string
	if r.doc != nil && r.err == nil {
		if p := r.doc.Problems(); len(p) > 0 {
			msg = p[0]
		}
	}
	if msg == "" && len(r.flags) > 0 {
		msg = r.flags[0].detail
	}
	return ellipsize(termtext.Escape(msg), maxMessage)
}

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
func printStatusTable(a *app, rows []nodeRow, now time.Time) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tAPPLIED\tSEEN\tMACHINES\tMESSAGE\tAGE\tFLAGS")
	for _, r := range rows {
		if r.doc == nil {
			fmt.Fprintf(tw, "%s\t-\t\t-\t%s\t-\t%s\n", termtext.Escape(r.key), message(r), flagNames(r.flags))
			continue
		}
		d := r.doc
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Escape(rowName(r)), termtext.Escape(appliedCell(d)), termtext.Escape(seenCell(d)),
			termtext.Escape(machinesSummary(d.Machines)), message(r), age(now.Sub(d.UpdatedAt)), flagNames(r.flags))
	}
	tw.Flush()
	for _, r := range rows {
		if r.doc == nil {
			a.log.Warn("unreadable status document", "key", r.key, "error", r.err)
		}
	}
}

// printNode prints one agent in full: who, trust, the applied and seen
// spec, every entry, every machine and every problem.
func printNode(a *app, r nodeRow, now time.Time) {
	if r.doc == nil {
		fmt.Fprintf(a.stdout, "%s: the status document cannot be read: %s\n", termtext.Escape(r.key), termtext.Escape(fmt.Sprint(r.err)))
		return
	}
	d := r.doc
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t%s\n", label, termtext.Escapef(format, args...))
	}
	line("Identity", "%s", rowName(r))
	line("Agent", "mms %s, started %s, updated %s ago (every %s)", d.AgentVersion, d.StartedAt.Format(time.RFC3339), age(now.Sub(d.UpdatedAt)), cmp.Or(d.Heartbeat, "?"))
	if !d.StoppedAt.IsZero() {
		line("Stopped", "%s (%s ago)", d.StoppedAt.Format(time.RFC3339), age(now.Sub(d.StoppedAt)))
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
			desc += fmt.Sprintf(" (%s ago)", age(now.Sub(s.At)))
		}
		line("Seen", "%s", desc)
	}
	line("NATS", "%s", natsLine(d))
	if d.LastError != "" {
		line("Last error", "%s (%s ago)", d.LastError, age(now.Sub(d.LastErrorAt)))
	}
	line("Flags", "%s", cmp.Or(flagNames(r.flags), "none"))
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
				reason = downloadLine(e.Download)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Escape(e.Name), termtext.Escape(e.Outcome), termtext.Escape(e.Version),
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
	if details := problemDetails(r.flags); len(details) > 0 {
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

// downloadLine describes a download in progress: "12.0 MiB of 50.0 MiB
// (24%)".
func downloadLine(p *nodestatus.Download) string {
	if p.Total <= 0 {
		return "downloading: " + bytesize(p.Done) + " so far"
	}
	return fmt.Sprintf("downloading: %s of %s (%d%%)", bytesize(p.Done), bytesize(p.Total), p.Done*100/p.Total)
}

// bytesize formats n bytes for people.
func bytesize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
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

// age formats a duration the way people read ages: 4s, 9m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// shortHex abbreviates a digest or checksum to 12 characters.
func shortHex(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
