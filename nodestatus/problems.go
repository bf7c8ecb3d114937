package nodestatus

import (
	"fmt"
	"strings"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/rollout"
)

// Problems lists what needs an operator's attention on the node, as its
// document says it, most important first, one line each:
//
//   - the last spec seen was refused (a missing spec, or one being
//     applied, is not a problem of the node): "serial 4000
//     ignored-older: <reason>";
//   - the applied spec has expired;
//   - an entry failed or was rolled back: "<entry>: <reason>";
//   - a machine that runs (or failed to load) has errors: "<machine>:
//     <errors>";
//   - the server denied the agent something: "nats: <violation>";
//   - the agent trimmed the document to fit (see [MaxWrittenSize]).
//
// What depends on the reader's clock (a document not updated for a while)
// or on the fleet (a node behind the current spec) is the reader's to add.
// The text comes from the node: escape it before printing it.
func (d *Document) Problems() []string {
	var out []string
	if s := d.Seen; s.Refused() {
		out = append(out, s.Problem())
	}
	if a := d.Applied; a != nil && a.Stale {
		out = append(out, fmt.Sprintf("applied spec %s has expired: its machines keep running and nothing is purged until a new spec is published", a.Label()))
	}
	for _, e := range d.Failed() {
		out = append(out, e.Problem())
	}
	out = append(out, d.MachineErrors()...)
	for _, v := range d.NATS.PermissionViolations {
		out = append(out, "nats: "+v.Message)
	}
	if d.Trimmed != "" {
		out = append(out, d.Trimmed)
	}
	return out
}

// Failed returns the entries that failed, were rolled back, failed their
// health gate, or are held by a rollout that halted.
func (d *Document) Failed() []Entry {
	var out []Entry
	for _, e := range d.Entries {
		switch manager.EntryOutcome(e.Outcome) {
		case manager.EntryFailed, manager.EntryRolledBack, manager.EntryUnhealthy:
			out = append(out, e)
		case manager.EntryHeld:
			if e.Halted() {
				out = append(out, e)
			}
		}
	}
	return out
}

// Halted reports whether the entry is held by a rollout that halted (a
// node of an earlier wave failed with the new version).
func (e Entry) Halted() bool {
	return manager.EntryOutcome(e.Outcome) == manager.EntryHeld && strings.HasPrefix(e.Reason, rollout.HaltedPrefix)
}

// Entry returns the document's entry name, and false when it has none.
func (d *Document) Entry(name string) (Entry, bool) {
	for _, e := range d.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// HeldByHold reports whether the entry's hold holds the node: it keeps
// what it runs by the operator's choice, and waits for nothing.
func (e Entry) HeldByHold() bool {
	return manager.EntryOutcome(e.Outcome) == manager.EntryHeld && e.Hold != ""
}

// State is the entry's outcome for people: the outcome, or "held (hold)"
// for an entry its hold holds.
func (e Entry) State() string {
	if e.HeldByHold() {
		return manager.HoldHeld
	}
	return e.Outcome
}

// Waiting says what the entry still waits for, in one line, or "": a
// rollout wave, or its health gate.
func (e Entry) Waiting() string {
	switch {
	case manager.EntryOutcome(e.Outcome) == manager.EntryHeld && !e.Halted() && !e.HeldByHold():
		return e.Name + " " + e.Reason
	case e.Health == "pending":
		return e.Name + " health pending"
	}
	return ""
}

// MachineErrors lists the errors of the machines (load and watcher
// errors) whose entry did not fail already: "<machine>: <errors>".
func (d *Document) MachineErrors() []string {
	failed := map[string]bool{}
	for _, e := range d.Failed() {
		failed[e.Name] = true
	}
	var out []string
	for _, m := range d.Machines {
		if m.LastError != "" && !failed[m.Name] {
			out = append(out, m.Name+": "+m.LastError)
		}
	}
	return out
}

// Refused reports whether the node refused the spec (see
// manager.SeenRefused); false for a nil Seen.
func (s *Seen) Refused() bool { return s != nil && manager.SeenRefused(s.Outcome) }

// Problem says what became of the spec, in one line: "serial 4000
// ignored-older: <reason>".
func (s *Seen) Problem() string { return joinNonEmpty(": ", s.Label()+" "+s.Outcome, s.Reason) }

// Problem says what became of the entry, in one line: "web failed:
// <reason>".
func (e Entry) Problem() string {
	// A held entry's reason already starts with "held: ".
	return joinNonEmpty(": ", e.Name+" "+e.Outcome, strings.TrimPrefix(e.Reason, e.Outcome+": "))
}

// Label names the spec for people: "serial 17", or "v1 0123456789ab" for
// a v1 spec (which has no serial).
func (a *Applied) Label() string { return manager.SpecLabel(a.Format, a.Serial, a.Digest) }

// Label names the spec for people: "serial 17", "v1 0123456789ab", or
// "spec" when the envelope did not decode far enough to tell.
func (s *Seen) Label() string { return manager.SpecLabel(s.Format, s.Serial, s.Digest) }

// joinNonEmpty joins the non-empty parts with sep.
func joinNonEmpty(sep string, parts ...string) string {
	kept := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, sep)
}
