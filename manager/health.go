package manager

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/spec"
)

// Health gates and rollouts.
//
// A version installed for an entry with a health gate (spec.Health) is
// pending until its machine enters a healthy state within the gate's
// window; entering a fail state first, or the window running out, makes it
// unhealthy: an upgrade is rolled back to the version the installer kept
// and a first install is stopped, and that version (by checksum) is not
// tried again until the spec pins another. Gates are level-based like the
// rest of the reconciler: each pass looks at the machines the host runs
// (watchers.Host.MachineState), and while a gate is pending the pass asks
// to run again soon (PassReport.NextCheck).
//
// An entry with a rollout policy (spec.Rollout) moves a node to a new
// version only when package rollout says its wave may go, from what the
// fleet reports (FleetView); until then the entry is held and the node
// keeps what it runs. A held node does not poll: the pass asks to run
// again when the pause it waits for ends (PassReport.NextCheck), says that
// what the fleet reports may let it go (PassReport.FleetWait: the machines
// watcher runs a pass when the FleetView says a node's report changed,
// see FleetNotifier), and otherwise looks again only after HeldRecheck.

// HealthPoll is how often a pass runs while a health gate is pending.
const HealthPoll = 500 * time.Millisecond

// HeldRecheck is how long a node that a rollout holds (waiting for an
// earlier wave, halted or paused) waits before it looks at the fleet
// again by itself, when no report changes: a node of an earlier wave
// that stops reporting goes stale with time, not with a change.
const HeldRecheck = 15 * time.Second

// FleetRetry is when a pass that could not read the fleet's reports runs
// again.
const FleetRetry = 2 * time.Second

// FleetRecheckMin is the least time between two passes that changes of
// the fleet's reports start (see FleetNotifier): a held node never polls
// faster than this.
const FleetRecheckMin = time.Second

// FleetView is what the fleet's nodes report about an entry, for rollouts:
// one rollout.Node per node the entry selects (the agents' status
// documents, see internal/nodestatus.View).
type FleetView interface {
	Nodes(ctx context.Context, machine string) ([]rollout.Node, error)
}

// FleetNotifier is implemented by a FleetView that tells when what it
// reports may have changed: Changes receives (coalesced) after a node's
// report of an entry changed in a way a rollout decision reads (its
// version, outcome, health), or a node started, stopped or went away.
// Heartbeats that change nothing else are not changes.
type FleetNotifier interface {
	Changes() <-chan struct{}
}

// entryHealth is what the reconciler knows of the health of the version
// of a machine it last installed or found installed.
type entryHealth struct {
	checksum  string
	health    rollout.Health
	since     time.Time // when the gate started (the version was loaded)
	healthyAt time.Time
	reason    string
	upgrade   bool   // a previous version is kept to roll back to
	version   string // the version's name, once the host ran it
}

// now returns the reconciler's clock.
func (r *Reconciler) now() time.Time {
	if r.cfg.Now != nil {
		return r.cfg.Now()
	}
	return time.Now()
}

// holdForRollout decides, for every entry about to move this node to a new
// version under a rollout policy, whether its wave may go; the others are
// held (their result says why) and keep what they run. It returns when to
// look again (zero: no entry is waiting) and sets *fleetWait when an entry
// is held by what the fleet reports (a change there may let it go).
func (r *Reconciler) holdForRollout(ctx context.Context, p *plan, results []MachineResult, installed map[string]Record, fleetWait *bool) time.Duration {
	if r.cfg.Fleet == nil {
		return 0
	}
	var next time.Duration
	for i, e := range p.entries {
		m := e.machine
		if results[i].Outcome != "" || m.Rollout == nil {
			continue
		}
		if rec, ok := installed[m.Name]; ok && strings.EqualFold(rec.Checksum, m.Checksum) {
			continue // already on this version: nothing to roll out here
		}
		policy, err := rollout.NewPolicy(m.Rollout)
		if err != nil {
			results[i].Outcome, results[i].Reason = EntryFailed, err.Error()
			continue
		}
		view, err := r.cfg.Fleet.Nodes(ctx, m.Name)
		if err != nil {
			results[i].Outcome, results[i].Reason, results[i].Retryable = EntryHeld, "held: the fleet's status cannot be read: "+err.Error(), true
			next = minPositive(next, FleetRetry)
			continue
		}
		d := rollout.Decide(policy, r.cfg.Identity, m.Name, m.Checksum, view, r.now())
		results[i].Wave = d.Wave
		if d.Proceed {
			continue
		}
		results[i].Outcome, results[i].Reason = EntryHeld, d.Held
		if rec, ok := installed[m.Name]; ok {
			results[i].Installed = rec.Checksum
		}
		*fleetWait = true
		next = minPositive(next, HeldRecheck)
		if d.Retry > 0 {
			next = min(next, d.Retry) // the pause ends
		}
	}
	return next
}

// judge applies the health gates to the entries installed and loaded in
// this pass (results with an installed outcome): it starts a gate for a
// version just loaded, settles one whose machine reached a healthy or fail
// state or ran out of time, and rolls back or stops an unhealthy version.
// It fills in each result's health and returns when to look again.
// installed is the install records the pass read before installing: a
// version found installed (unchanged in this pass) is an upgrade when its
// record keeps a previous version.
func (r *Reconciler) judge(ctx context.Context, p *plan, results []MachineResult, installed map[string]Record) time.Duration {
	now := r.now()
	var next time.Duration
	for i, e := range p.entries {
		res := &results[i]
		m := e.machine
		switch res.Outcome {
		case EntryInstalled, EntryUpdated, EntryUnchanged:
		default:
			continue
		}
		res.Installed = strings.ToLower(m.Checksum)
		h := r.health[m.Name]
		if h == nil || !strings.EqualFold(h.checksum, m.Checksum) || res.Outcome != EntryUnchanged {
			// The gate judges this run of the machine: from when it started
			// (just now for an install; at the agent's start for a version
			// found installed), or from now while it splays.
			h = &entryHealth{checksum: strings.ToLower(m.Checksum), health: rollout.Pending, since: now, upgrade: res.Outcome == EntryUpdated}
			if st, ok := r.cfg.Host.MachineState(m.Name); ok && !st.Started.IsZero() && st.Started.Before(now) {
				h.since = st.Started
			}
			if res.Outcome == EntryUnchanged {
				h.upgrade = installed[m.Name].Previous != nil
			}
			if m.Health == nil {
				h.health, h.healthyAt = rollout.Healthy, h.since
			}
			r.health[m.Name] = h
		}
		if h.health == rollout.Pending {
			r.settle(m.Health, m.Name, h, now)
		}
		switch h.health {
		case rollout.Pending:
			deadline := h.since.Add(m.Health.Within.Std()).Sub(now)
			next = minPositive(next, max(min(deadline, HealthPoll), time.Millisecond))
		case rollout.Unhealthy:
			r.fail(ctx, m, h, res)
		}
		res.Health, res.HealthyAt = h.health, h.healthyAt
	}
	return next
}

// settle decides a pending gate from what the host says of machine name.
func (r *Reconciler) settle(gate *spec.Health, name string, h *entryHealth, now time.Time) {
	st, running := r.cfg.Host.MachineState(name)
	first := func(states []string) (time.Time, string) {
		var at time.Time
		var which string
		for _, s := range states {
			if t, ok := st.Entered[s]; ok && !t.Before(h.since) && (at.IsZero() || t.Before(at)) {
				at, which = t, s
			}
		}
		return at, which
	}
	if running && !st.Started.Before(h.since) {
		h.version = st.Version
		okAt, ok := first(gate.States)
		badAt, bad := first(gate.FailStates)
		deadline := h.since.Add(gate.Within.Std())
		switch {
		case ok != "" && (bad == "" || okAt.Before(badAt)) && !okAt.After(deadline):
			h.health, h.healthyAt = rollout.Healthy, okAt
			return
		case bad != "":
			h.health, h.reason = rollout.Unhealthy, fmt.Sprintf("entered %s", bad)
			return
		}
	}
	if now.After(h.since.Add(gate.Within.Std())) {
		h.health = rollout.Unhealthy
		h.reason = fmt.Sprintf("not %s within %v", strings.Join(gate.States, " or "), gate.Within.Std())
		if !running {
			h.reason += " (the machine is not running)"
		}
	}
}

// fail acts on an unhealthy version: an upgrade goes back to the version
// kept for rollback, a first install is stopped; either way the version is
// remembered as bad so it is not tried again until the spec changes it.
func (r *Reconciler) fail(ctx context.Context, m spec.Machine, h *entryHealth, res *MachineResult) {
	log := r.log.With("entry", m.Name, "checksum", h.checksum)
	version := short(m.Checksum)
	if h.version != "" {
		version = h.version + " (" + version + ")"
	}
	reason := fmt.Sprintf("version %s unhealthy: %s", version, h.reason)
	bad := badVersion{checksum: m.Checksum, verifyChecksum: m.VerifyChecksum}
	if h.upgrade {
		err := r.cfg.Installer.Rollback(ctx, m.Name)
		if err == nil {
			err = r.cfg.Host.LoadMachine(ctx, m.Name, nil)
		}
		if err != nil {
			res.Outcome, res.Reason = EntryFailed, fmt.Sprintf("%s; rolling back failed: %v", reason, err)
			log.Error("unhealthy version could not be rolled back", "reason", h.reason, "error", err)
			bad.outcome, bad.reason = EntryFailed, res.Reason
			r.bad[m.Name] = bad
			return
		}
		h.health = rollout.RolledBack
		res.Outcome, res.Reason = EntryRolledBack, reason+"; rolled back to the previous version"
		if recs, err := r.cfg.Installer.Installed(); err == nil {
			res.Installed = recs[m.Name].Checksum
		}
		log.Error("new version failed its health gate; rolled back to the previous one", "reason", h.reason)
	} else {
		err := r.cfg.Host.UnloadMachine(ctx, m.Name)
		res.Outcome, res.Reason = EntryUnhealthy, reason+"; stopped (there is no previous version to roll back to)"
		if err != nil {
			res.Reason += fmt.Sprintf("; stopping it failed: %v", err)
		}
		res.Installed = ""
		log.Error("new machine failed its health gate; stopped", "reason", h.reason, "error", err)
	}
	bad.outcome, bad.reason = res.Outcome, res.Reason
	r.bad[m.Name] = bad
}

// minPositive returns the smaller of a and b, ignoring zeros.
func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}
