package manager

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// plan is an accepted spec's entries, each validated on its own and with
// its matcher compiled. It depends only on the spec's bytes and the
// reconciler's fixed settings, so it is built once per digest and reused
// by every pass over the same spec.
type plan struct {
	digest  string
	format  packer.Format
	entries []planEntry
}

// planEntry is one spec entry.
type planEntry struct {
	machine spec.Machine
	matcher *spec.Matcher // nil matches every node
	hold    *spec.Matcher // nil holds no node
	invalid error         // why the entry cannot be acted on, if it cannot
	badName bool          // the name itself is invalid: purges are held
}

// planFor returns the plan of an opened spec, from the cache when the spec
// is the one planned last. A spec whose header (serial, times) is invalid
// is an error wrapping spec.ErrInvalid; invalid entries are not.
func (r *Reconciler) planFor(opened *packer.Opened) (*plan, error) {
	if r.plan != nil && r.plan.digest == opened.Digest && r.plan.format == opened.Format {
		return r.plan, nil
	}
	r.matches.Next()
	p, err := r.buildPlan(opened, &r.matches)
	if err != nil {
		return nil, err
	}
	for _, e := range p.entries {
		if e.invalid != nil {
			// Once per spec: the plan is reused until the spec changes.
			r.log.Error("spec entry is invalid: it is not installed (a copy installed before keeps running)", "managed", e.machine.Name, "serial", opened.Spec.Serial, "error", e.invalid)
		}
	}
	r.plan = p
	return p, nil
}

// buildPlan validates every entry of an opened spec and compiles its
// matchers through cache (see planFor).
func (r *Reconciler) buildPlan(opened *packer.Opened, cache *spec.MatcherCache) (*plan, error) {
	opts := spec.ValidateOptions{AllowHTTP: r.cfg.AllowHTTP, HTTPFix: r.cfg.Fixes.http(), Legacy: opened.Format == packer.FormatV1}
	s := opened.Spec
	header := spec.Spec{Serial: s.Serial, IssuedAt: s.IssuedAt, Expires: s.Expires}
	if err := header.Validate(opts); err != nil {
		return nil, err
	}
	p := &plan{digest: opened.Digest, format: opened.Format, entries: make([]planEntry, len(s.Machines))}
	first := map[string]int{} // name → index of its first entry
	for i, m := range s.Machines {
		e := &p.entries[i]
		e.machine = m
		e.badName = spec.ValidName(m.Name) != nil
		var err error
		if e.matcher, err = m.Check(opts, cache); err != nil {
			e.invalid = err
		} else if e.hold, err = compileHold(m, cache); err != nil {
			e.invalid = err
		} else if r.cfg.Reserved != nil && r.cfg.Reserved(m.Name) {
			e.invalid = fmt.Errorf("machine %q: name: reserved by a machine compiled into the agent", m.Name)
		}
		if j, dup := first[m.Name]; dup {
			// Neither copy wins: which one the operator meant is unknown.
			err := fmt.Errorf("machine[%d] %q: name: duplicate of machine[%d]: %w", i, m.Name, j, spec.ErrInvalid)
			e.invalid = errors.Join(e.invalid, err)
			p.entries[j].invalid = errors.Join(p.entries[j].invalid,
				fmt.Errorf("machine[%d] %q: name: duplicated by machine[%d]: %w", j, m.Name, i, spec.ErrInvalid))
		} else {
			first[m.Name] = i
		}
	}
	return p, nil
}

// evaluate decides what to do with one entry on this node: the result of
// an entry that needs no install (failed or skipped), or a pending result
// (empty Outcome) for one to install. keep reports whether the entry's
// name stays on the node: every entry except one whose matcher cleanly
// says no.
func (r *Reconciler) evaluate(ctx context.Context, e planEntry, env *spec.Env, copies copyNotes) (res MachineResult, keep bool) {
	res = MachineResult{Name: e.machine.Name, Checksum: e.machine.Checksum}
	if e.invalid != nil {
		kept := copies.note(e.machine.Name)
		if e.badName {
			kept += "; nothing is purged while an entry's name is invalid"
		}
		res.Outcome, res.Reason = EntryFailed, "invalid entry ("+kept+"): "+e.invalid.Error()
		return res, true
	}
	ok, err := e.matcher.MatchContext(ctx, env, 0) // bounded: spec.DefaultMatchTimeout
	switch {
	case err != nil:
		res.Outcome, res.Reason = EntryFailed, fmt.Sprintf("match %q: %v (%s)", e.matcher, err, copies.note(e.machine.Name))
		res.Match = e.machine.Match
		res.Retryable = true // facts and files change
		return res, true
	case !ok:
		res.Outcome, res.Reason = EntrySkipped, fmt.Sprintf("match %q does not select this node", e.matcher)
		res.Match = e.machine.Match
		return res, false
	}
	if e.hold != nil {
		held, err := e.hold.MatchContext(ctx, env, 0)
		switch {
		case err != nil:
			res.Outcome, res.Reason = EntryFailed, fmt.Sprintf("hold %q: %v (%s)", e.hold, err, copies.note(e.machine.Name))
			res.Hold, res.Retryable = e.machine.Hold, true
			return res, true
		case held:
			res.Outcome, res.Hold = EntryHeld, e.machine.Hold
			res.Reason = fmt.Sprintf("%s: hold %q selects this node; it keeps what it runs", HoldHeld, e.hold)
			return res, true
		}
	}
	if b, ok := r.bad[e.machine.Name]; ok && b.checksum == e.machine.Checksum && b.verifyChecksum == e.machine.VerifyChecksum {
		res.Outcome = cmp.Or(b.outcome, EntryFailed)
		res.Reason = b.reason + " (this version is not tried again until the spec pins another one or the agent restarts)"
	}
	return res, true
}

// copyNotes says, for an entry that fails before its install, what
// becomes of the machine installed under its name, from the install
// records the pass read (records, or err when they could not be read).
type copyNotes struct {
	records map[string]Record
	err     error
}

// note is "the installed copy is kept", "nothing was installed under this
// name", or, when the install records cannot be read, "an installed copy,
// if any, is kept".
func (c copyNotes) note(name string) string {
	if c.err != nil {
		return "an installed copy, if any, is kept"
	}
	if _, ok := c.records[name]; ok {
		return "the installed copy is kept"
	}
	return "nothing was installed under this name"
}

// HoldHeld starts the reason of an entry that its hold keeps as it is on
// the node (MachineResult.Hold is set too).
const HoldHeld = "held (hold)"

// compileHold returns the compiled hold matcher of m (nil without one),
// from cache; validation has compiled it already.
func compileHold(m spec.Machine, cache *spec.MatcherCache) (*spec.Matcher, error) {
	if m.Hold == "" {
		return nil, nil
	}
	h, err := cache.Compile(m.Hold)
	if err != nil {
		return nil, fmt.Errorf("machine %q: hold: %w", m.Name, err)
	}
	return h, nil
}

// forgetBadVersions drops remembered load and health failures of machines
// the plan no longer pins at that version, and the health of machines it
// no longer has.
func (r *Reconciler) forgetBadVersions(p *plan) {
	pinned := map[string]spec.Machine{}
	for _, e := range p.entries {
		pinned[e.machine.Name] = e.machine
	}
	for name, b := range r.bad {
		m, ok := pinned[name]
		if !ok || m.Checksum != b.checksum || m.VerifyChecksum != b.verifyChecksum {
			delete(r.bad, name)
		}
	}
	for name := range r.health {
		if _, ok := pinned[name]; !ok {
			delete(r.health, name)
		}
	}
}

// noteHeld fills in what runs under the entries a remembered failure
// decided (their results say failed, rolled_back or unhealthy): the
// version installed, and the health the pinned version had.
func (r *Reconciler) noteHeld(results []MachineResult, installed map[string]Record) {
	for i := range results {
		res := &results[i]
		switch res.Outcome {
		case EntryFailed, EntryRolledBack, EntryUnhealthy:
		case EntryHeld: // by its hold: it keeps what it runs
			if rec, ok := installed[res.Name]; ok {
				res.Installed = rec.Checksum
			}
			continue
		default:
			continue
		}
		if rec, ok := installed[res.Name]; ok && res.Outcome != EntryUnhealthy {
			res.Installed = rec.Checksum
		}
		if h := r.health[res.Name]; h != nil && strings.EqualFold(h.checksum, res.Checksum) {
			res.Health = h.health
		}
	}
}
