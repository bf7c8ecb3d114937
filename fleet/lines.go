package fleet

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mms-io/mms/nodestatus"
)

// The words of a node as `mms status` prints it and the fleet page shows
// it: the cells of its row and its detail. The text is raw (see the
// package doc).

// AppliedCell is the node's APPLIED cell: the serial (or v1 digest) of the
// spec it runs, "never" when it never applied one, "-" before its manager
// reported or when the document cannot be read.
func (n Node) AppliedCell() string {
	d := n.Doc
	switch {
	case d == nil:
		return "-"
	case d.Applied != nil:
		return compactLabel(d.Applied.Format, d.Applied.Serial, d.Applied.Digest)
	case d.Seen != nil:
		return "never"
	}
	return "-"
}

// SeenCell is the node's SEEN cell: empty when it applied the spec it saw
// last, else that spec and what became of it ("4000 ignored-older").
func (n Node) SeenCell() string {
	if n.Doc == nil {
		return ""
	}
	d := n.Doc
	s := d.Seen
	if s == nil || (s.Outcome == nodestatus.SeenApplied && d.Applied != nil && s.Digest == d.Applied.Digest) {
		return ""
	}
	if label := compactLabel(s.Format, s.Serial, s.Digest); label != "" {
		return label + " " + s.Outcome
	}
	return s.Outcome
}

// MachinesCell counts the node's machines per state: "3 (RUN 2, MANAGE
// 1)"; "-" when the document cannot be read.
func (n Node) MachinesCell() string {
	if n.Doc == nil {
		return "-"
	}
	return MachinesSummary(n.Doc.Machines)
}

// compactLabel names a spec in a table cell: its serial, "v1 <digest>", or
// the digest.
func compactLabel(format string, serial uint64, digest string) string {
	switch {
	case format == "v1":
		return "v1 " + short(digest)
	case serial > 0:
		return fmt.Sprint(serial)
	}
	return short(digest)
}

// MachinesSummary counts machines per state, the most common first: "3
// (RUN 2, MANAGE 1)"; a machine without a state is "not running".
func MachinesSummary(ms []nodestatus.Machine) string {
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

// Detail is one node in full: `mms status NODE` prints it, the node page
// shows it.
type Detail struct {
	// Lines describe the node, label and text: Identity, Agent, Stopped,
	// Trusts, Applied, Seen, NATS, Last error and Flags, those that apply.
	Lines []Line `json:"lines"`
	// Entries are what the node did with each spec entry.
	Entries []EntryRow `json:"entries"`
	// Machines are the machines it runs or failed to run.
	Machines []MachineRow `json:"machines"`
	// Problems are "flag: detail" for each flag that needs attention.
	Problems []string `json:"problems"`
}

// Line is one labelled line of a [Detail].
type Line struct {
	Label string `json:"label"`
	Text  string `json:"text"`
}

// EntryRow is one spec entry of a node: its outcome, the version that
// runs under its name and that machine's state, its health, the checksum
// it pins (abbreviated) and why (the download's progress while it
// downloads).
type EntryRow struct {
	Name     string `json:"name"`
	Outcome  string `json:"outcome"`
	Version  string `json:"version"`
	State    string `json:"state"`
	Health   string `json:"health"`
	Checksum string `json:"checksum"`
	Reason   string `json:"reason"`
}

// MachineRow is one machine of a node: its state ("not running" when it
// does not run, "(compiled in)" added for a compiled-in one), the
// manager's or host's last outcome and its errors.
type MachineRow struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	State       string `json:"state"`
	LastOutcome string `json:"last_outcome"`
	Errors      string `json:"errors"`
}

// Detail describes the node in full at now; an unreadable document has
// one line saying why.
func (n Node) Detail(now time.Time) Detail {
	out := Detail{Lines: []Line{}, Entries: []EntryRow{}, Machines: []MachineRow{}, Problems: n.Problems()}
	if out.Problems == nil {
		out.Problems = []string{}
	}
	d := n.Doc
	if d == nil {
		out.Lines = append(out.Lines, Line{"Unreadable", fmt.Sprintf("the status document %s cannot be read: %v", n.Key, n.Err)})
		return out
	}
	line := func(label, format string, args ...any) {
		out.Lines = append(out.Lines, Line{label, fmt.Sprintf(format, args...)})
	}
	line("Identity", "%s", d.Identity)
	line("Agent", "mms %s, started %s, updated %s ago (every %s)", d.AgentVersion, d.StartedAt.Format(time.RFC3339), Age(now.Sub(d.UpdatedAt)), cmp.Or(d.Heartbeat, "?"))
	if !d.StoppedAt.IsZero() {
		line("Stopped", "%s (%s ago)", d.StoppedAt.Format(time.RFC3339), Age(now.Sub(d.StoppedAt)))
	}
	line("Trusts", "%s", TrustLine(d.Trust))
	switch {
	case d.Applied != nil:
		ap := d.Applied
		desc := fmt.Sprintf("%s (%s, digest %s)", ap.Label(), cmp.Or(ap.Format, "?"), short(ap.Digest))
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
			desc = s.Label() + " " + s.Outcome // the entries say what failed
		}
		if !s.At.IsZero() {
			desc += fmt.Sprintf(" (%s ago)", Age(now.Sub(s.At)))
		}
		line("Seen", "%s", desc)
	}
	line("NATS", "%s", NATSLine(d))
	if d.LastError != "" {
		line("Last error", "%s (%s ago)", d.LastError, Age(now.Sub(d.LastErrorAt)))
	}
	line("Flags", "%s", cmp.Or(strings.Join(n.FlagNames(), ","), "none"))

	states := map[string]string{}
	for _, m := range d.Machines {
		states[m.Name] = m.State
	}
	for _, e := range d.Entries {
		reason := e.Reason
		if e.Download != nil {
			reason = DownloadLine(e.Download)
		}
		out.Entries = append(out.Entries, EntryRow{Name: e.Name, Outcome: e.State(), Version: e.Version, State: states[e.Name],
			Health: e.Health, Checksum: short(e.Checksum), Reason: reason})
	}
	for _, m := range d.Machines {
		state := cmp.Or(m.State, "not running")
		if m.CompiledIn {
			state += " (compiled in)"
		}
		out.Machines = append(out.Machines, MachineRow{Name: m.Name, Version: m.Version, State: state, LastOutcome: m.LastOutcome, Errors: m.LastError})
	}
	return out
}

// TrustLine describes a node's trust policy: "1 of key 0123456789ab",
// whether v1 specs are allowed, or that it checks no signature.
func TrustLine(t *nodestatus.Trust) string {
	switch {
	case t == nil:
		return "not reported (an older agent)"
	case t.Unsigned:
		return "ANY spec: signatures are not checked (--insecure-unsigned)"
	}
	ids := make([]string, len(t.KeyIDs))
	for i, id := range t.KeyIDs {
		ids[i] = short(id)
	}
	s := fmt.Sprintf("%d of key%s %s", t.Threshold, plural(len(ids)), strings.Join(ids, ", "))
	if t.AllowV1 {
		s += "; v1 specs allowed"
	}
	return s
}

// NATSLine describes a node's NATS connection: connected or not, to
// where, its reconnects and permission violations.
func NATSLine(d *nodestatus.Document) string {
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

// Headline names a rollout in one line: the machine, the versions, the
// waves and the pause: "web: 1.0.0 → 2.0.0 (3f2a8c1b2d3e)  waves 1, 50%,
// 100%, pause 30s".
func (r *Rollout) Headline() string {
	return r.Machine + ": " + r.VersionsLine() + "  " + r.PolicyLine()
}

// PolicyLine describes a rollout's policy: "waves 1, 50%, 100%, pause
// 30s".
func (r *Rollout) PolicyLine() string {
	line := fmt.Sprintf("waves %s, pause %v", strings.Join(r.Policy.Waves, ", "), r.Policy.Pause.Std())
	if r.Budget != nil {
		line += ", max_failed " + r.Budget.MaxFailed
	}
	return line
}

// VersionsLine names the versions a rollout moves between: "1.0.0, 1.1.0
// → 2.0.0 (3f2a8c1b2d3e)", "nothing → …" for a first install under way,
// the new version alone once no node is known to have run another.
func (r *Rollout) VersionsLine() string {
	switch {
	case len(r.OldVersions) > 0:
		return strings.Join(r.OldVersions, ", ") + " → " + r.New.String()
	case !r.Done:
		return "nothing → " + r.New.String()
	}
	return r.New.String()
}

// Notes are the lines that follow a rollout's status line: its failure
// budget and the nodes that used it (or, without a budget, the nodes that
// failed), and the nodes its hold keeps out of the waves.
func (r *Rollout) Notes() []string {
	var out []string
	switch b := r.Budget; {
	case b != nil && len(r.Failed) > 0:
		out = append(out, "failure budget: "+b.String()+"; rolled back on their own: "+strings.Join(r.Failed, ", "))
	case b != nil:
		out = append(out, "failure budget: "+b.String())
	case len(r.Failed) > 1:
		out = append(out, "failed with the new version: "+strings.Join(r.Failed, ", "))
	}
	if len(r.Held) > 0 {
		out = append(out, "held by its hold (they keep what they run, in no wave): "+strings.Join(r.Held, ", "))
	}
	if len(r.SkippedStale) > 0 {
		out = append(out, "left out (stopped reporting; the policy skips such nodes): "+strings.Join(r.SkippedStale, ", "))
	}
	return out
}

// StatusLine says where a rollout is at now: why its policy does not
// parse, where and why it HALTED, done, or the wave under way and when it
// starts after a pause.
func (r *Rollout) StatusLine(now time.Time) string {
	switch {
	case r.Problem != "":
		return "the rollout policy does not parse: " + r.Problem
	case r.Halted:
		return fmt.Sprintf("HALTED at wave %d: %s", r.HaltedAt, r.Reason)
	case r.Done && len(r.Failed) > 0:
		return "done: every other node runs the new version healthy"
	case r.Done:
		return "done: every node runs the new version healthy"
	case r.Paused:
		return fmt.Sprintf("PAUSED at wave %d of %d: no node starts the new version (mms rollout resume %s continues)", r.Current, len(r.Waves), r.Machine)
	case r.Pause(now) > 0:
		return fmt.Sprintf("under way: wave %d of %d, starting in %v (the pause after wave %d)", r.Current, len(r.Waves), r.Pause(now).Round(time.Second), r.Current-1)
	case r.StaleWait() != "":
		return fmt.Sprintf("under way: wave %d of %d, waiting for %s", r.Current, len(r.Waves), r.StaleWait())
	}
	return fmt.Sprintf("under way: wave %d of %d", r.Current, len(r.Waves))
}
