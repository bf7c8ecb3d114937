package fleet_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestWait follows a spec just written: the agents that report when the
// wait starts count unless stopped or stale (a stale one counts again once
// it writes), agents that start reporting later count, a deleted document
// drops its agent; each is judged applied, failed, pending or superseded,
// with why, and the summary and progress say so.
func TestWait(t *testing.T) {
	b := newBench(t)
	now := time.Now().UTC()
	next := b.putSpec(packer.FormatV2, 17, entry("web", "1.0.0"))
	b.putDoc(doc("up", 16, now))
	b.putDoc(doc("gone-stale", 16, now.Add(-time.Hour)))
	stopped := doc("stopped-before", 16, now)
	stopped.StoppedAt = now
	b.putDoc(stopped)
	w := follow(t, b)
	wait := fleet.NewWait(w.Tracker(), next, now)
	if !cmp.Equal(wait.Skipped(), []string{"gone-stale"}) || wait.Label() != "serial 17" {
		t.Errorf("Skipped() = %v, Label() = %q; want gone-stale and serial 17", wait.Skipped(), wait.Label())
	}
	v := wait.Verdict(now)
	if diff := cmp.Diff([]fleet.WaitNode{{Key: "up", Identity: "up", State: fleet.WaitPending, Detail: "runs serial 16"}}, v.Nodes); diff != "" || v.Progress != "serial 17: 0/1 applied; pending: up" || v.Done() {
		t.Errorf("at the start: progress %q, nodes (-want +got):\n%s", v.Progress, diff)
	}

	edit := func(identity string, f func(*nodestatus.Document)) {
		d := doc(identity, 16, now)
		f(&d)
		b.putDoc(d)
	}
	applied := &nodestatus.Applied{Serial: 17, Digest: next.Digest, Format: "v2"}
	edit("applied", func(d *nodestatus.Document) { d.Applied = applied })
	edit("failed-entry", func(d *nodestatus.Document) {
		d.Applied = applied
		d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "failed", Reason: "install: sha256 mismatch"}, {Name: "db", Outcome: "installed"}}
	})
	edit("rejected", func(d *nodestatus.Document) {
		d.Seen = &nodestatus.Seen{Serial: 17, Digest: next.Digest, Format: "v2", Outcome: nodestatus.SeenUntrusted, Reason: "spec signed by no trusted key"}
	})
	edit("downloading", func(d *nodestatus.Document) {
		d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "downloading", Download: &nodestatus.Download{Done: 1 << 20, Total: 4 << 20}}}
	})
	edit("never-applied", func(d *nodestatus.Document) { d.Applied = nil })
	edit("stopped-now", func(d *nodestatus.Document) { d.StoppedAt = now })
	edit("newer", func(d *nodestatus.Document) { d.Applied = &nodestatus.Applied{Serial: 18, Digest: "d18", Format: "v2"} })
	edit("held", func(d *nodestatus.Document) {
		d.Applied = applied
		d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "held", Reason: "held: waiting for wave 1 (node up is pending)"}}
	})
	edit("gating", func(d *nodestatus.Document) {
		d.Applied = applied
		d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "updated", Health: "pending"}}
	})
	b.putDoc(doc("gone-stale", 16, now)) // writes again: counts
	b.deleteDoc("up")
	b.putRaw("junk", []byte("{"))
	want := []fleet.WaitNode{
		{Key: "applied", Identity: "applied", State: fleet.WaitApplied},
		{Key: "downloading", Identity: "downloading", State: fleet.WaitPending, Detail: "web downloading: 1.0 MiB of 4.0 MiB (25%)"},
		{Key: "failed-entry", Identity: "failed-entry", State: fleet.WaitFailed, Detail: "web failed: install: sha256 mismatch"},
		{Key: "gating", Identity: "gating", State: fleet.WaitPending, Detail: "web health pending"},
		{Key: "gone-stale", Identity: "gone-stale", State: fleet.WaitPending, Detail: "runs serial 16"},
		{Key: "held", Identity: "held", State: fleet.WaitPending, Detail: "web held: waiting for wave 1 (node up is pending)"},
		{Key: "never-applied", Identity: "never-applied", State: fleet.WaitPending, Detail: "never applied a spec"},
		{Key: "newer", Identity: "newer", State: fleet.WaitSuperseded, Detail: "runs serial 18, a newer spec"},
		{Key: "rejected", Identity: "rejected", State: fleet.WaitFailed, Detail: "serial 17 untrusted: spec signed by no trusted key"},
		{Key: "stopped-now", Identity: "stopped-now", State: fleet.WaitFailed, Detail: "the agent stopped"},
	}
	catchUp(t, w, func(*fleet.Tracker) error {
		if got := wait.Verdict(now).Nodes; !cmp.Equal(got, want) {
			return fmt.Errorf("nodes (-want +got):\n%s", cmp.Diff(want, got))
		}
		return nil
	})
	v = wait.Verdict(now)
	counts := map[fleet.WaitState]int{fleet.WaitApplied: 1, fleet.WaitPending: 5, fleet.WaitFailed: 3, fleet.WaitSuperseded: 1}
	if !cmp.Equal(v.Counts, counts) || v.Applied() != 2 || v.Done() || v.OK() {
		t.Errorf("counts %v (applied %d, done %v, ok %v), want %v", v.Counts, v.Applied(), v.Done(), v.OK(), counts)
	}
	if want := "serial 17: 2/10 applied, 3 failed: failed-entry: web failed: install: sha256 mismatch"; v.Summary != want {
		t.Errorf("Summary = %q, want %q", v.Summary, want)
	}
	if want := "serial 17: 2/10 applied, 3 failed: failed-entry: web failed: install: sha256 mismatch; pending: downloading, gating, gone-stale, held, never-applied"; v.Progress != want {
		t.Errorf("Progress = %q, want %q", v.Progress, want)
	}

	// Every pending agent applies: the wait is over, failed.
	for _, id := range []string{"downloading", "gating", "gone-stale", "held", "never-applied"} {
		edit(id, func(d *nodestatus.Document) { d.Applied = applied })
	}
	catchUp(t, w, func(*fleet.Tracker) error {
		if v := wait.Verdict(now); !v.Done() {
			return fmt.Errorf("not done: %s", v.Progress)
		}
		return nil
	})
	if v := wait.Verdict(now); v.OK() || v.Applied() != 7 || v.Progress != "serial 17: 7/10 applied, 3 failed: failed-entry: web failed: install: sha256 mismatch" {
		t.Errorf("done: ok %v, applied %d, progress %q", v.OK(), v.Applied(), v.Progress)
	}
	for _, id := range []string{"failed-entry", "rejected", "stopped-now"} {
		b.deleteDoc(id)
	}
	catchUp(t, w, func(*fleet.Tracker) error {
		if v := wait.Verdict(now); !v.OK() {
			return fmt.Errorf("not all applied: %s", v.Progress)
		}
		return nil
	})
}

// TestWaitProgressNamesWaves: while a rollout of the spec waited for
// pauses, holds or halts, the progress line says which wave, how long the
// pause still runs and who is pending.
func TestWaitProgressNamesWaves(t *testing.T) {
	b := newRolloutBench(t, "")
	w := follow(t, b.bench)
	wait := fleet.NewWait(w.Tracker(), b.op, b.now)
	first := b.waves[0][0]
	later := slices.Concat(b.waves[1:]...)
	b.report(first, b.newEntry(rollout.Healthy, b.now.Add(-10*time.Second)))
	for _, id := range later {
		b.report(id, b.oldEntry("held: wave 1 is healthy; pausing 20s before wave 2"))
	}
	pending := slices.Clone(later)
	slices.Sort(pending)
	want := "serial 2: 2/6 applied; web wave 2 of 3 pausing 20s; pending: " + strings.Join(pending, ", ")
	catchUp(t, w, func(*fleet.Tracker) error {
		if got := wait.Verdict(b.now).Progress; got != want {
			return fmt.Errorf("progress %q, want %q", got, want)
		}
		return nil
	})
	if got := wait.Verdict(b.now.Add(2 * time.Second)).Progress; !strings.Contains(got, "; web wave 2 of 3 pausing 18s; ") {
		t.Errorf("2s later the progress is %q, want the pause counted down", got)
	}

	// Wave 1 stops reporting: the rollout waits for it (it may be failing
	// over to another server), and the line says whom it waits for.
	b.silence(first)
	for _, id := range later {
		b.report(id, b.oldEntry("held: waiting for wave 1 (node "+first+" stopped reporting)"))
	}
	want = fmt.Sprintf("serial 2: 2/6 applied; web wave 1 of 3 (node %s stopped reporting); pending: %s", first, strings.Join(pending, ", "))
	catchUp(t, w, func(*fleet.Tracker) error {
		if got := wait.Verdict(b.now).Progress; got != want {
			return fmt.Errorf("progress %q, want %q", got, want)
		}
		return nil
	})
	if v := wait.Verdict(b.now); v.Done() {
		t.Errorf("waiting for a node that stopped reporting: done %v; want the wait to go on", v.Done())
	}

	// It reports again, rolled back: the rollout halts, the wait is over.
	b.report(first, b.newEntry(rollout.RolledBack, time.Time{}))
	for _, id := range later {
		b.report(id, b.oldEntry("held: rollout halted at wave 1 (node "+first+": rolled_back)"))
	}
	want = fmt.Sprintf("serial 2: 2/6 applied, 4 failed: %s: web held: rollout halted at wave 1 (node %s: rolled_back); web halted at wave 1", pending[0], first)
	catchUp(t, w, func(*fleet.Tracker) error {
		if got := wait.Verdict(b.now).Progress; got != want {
			return fmt.Errorf("progress %q, want %q", got, want)
		}
		return nil
	})
	if v := wait.Verdict(b.now); !v.Done() || v.OK() {
		t.Errorf("halted: done %v, ok %v; want the wait over, failed", v.Done(), v.OK())
	}
}

// TestWaitWithinTheFailureBudget: under max_failed 1, the node of wave 1
// rolls 2.0.1 back and the rest run it healthy; one node is held by the
// entry's hold. The wait is over and OK: the failed node is tolerated
// (named), the held one applied the spec; the rollout is done with its
// budget used and the held node left out of its waves; the progress says
// so. A paused rollout's progress says it is paused.
func TestWaitWithinTheFailureBudget(t *testing.T) {
	b := newRolloutBench(t, "")
	b.entry.Rollout.MaxFailed = spec.Budget{N: 1}
	b.entry.Hold = "identity('^w9$')"
	b.op = b.putSpec(packer.FormatV2, 3, b.entry, entry("db", "1.0.0"))
	w := follow(t, b.bench)
	wait := fleet.NewWait(w.Tracker(), b.op, b.now)
	first := b.waves[0][0]
	rolledBack := b.newEntry(rollout.RolledBack, time.Time{})
	rolledBack.Outcome, rolledBack.Installed, rolledBack.Reason = "rolled_back", b.old, "version 2.0.1 unhealthy: not ready within 3s; rolled back to the previous version"
	b.report(first, rolledBack)
	for _, id := range slices.Concat(b.waves[1:]...) {
		b.report(id, b.newEntry(rollout.Healthy, b.now.Add(-time.Second)))
	}
	held := b.oldEntry("held (hold): hold \"identity('^w9$')\" selects this node; it keeps what it runs")
	held.Hold = b.entry.Hold
	b.report("w9", held)
	b.report("db1", nodestatus.Entry{Name: "web", Outcome: "skipped", Checksum: b.new})
	var v fleet.Verdict
	catchUp(t, w, func(*fleet.Tracker) error {
		if v = wait.Verdict(b.now); !v.Done() || len(v.Nodes) != 7 {
			return fmt.Errorf("not done: %s", v.Progress)
		}
		return nil
	})
	if !v.OK() || v.Counts[fleet.WaitTolerated] != 1 || v.Applied() != 6 {
		t.Errorf("verdict: ok %v, counts %v; want ok, 1 tolerated, 6 applied", v.OK(), v.Counts)
	}
	if want := "serial 3: 6/7 applied, 1 failed within the failure budget; web done, max_failed 1: 1 of 1 used, 1 held by its hold"; v.Progress != want {
		t.Errorf("Progress = %q, want %q", v.Progress, want)
	}
	r := v.Rollouts[0]
	if !r.Done || !cmp.Equal(r.Failed, []string{first}) || !cmp.Equal(r.Held, []string{"w9"}) ||
		*r.Budget != (fleet.Budget{MaxFailed: "1", Failed: 1, Done: 5, Allowed: 1, Judged: true}) {
		t.Errorf("rollout: done %v, failed %v, held %v, budget %+v", r.Done, r.Failed, r.Held, r.Budget)
	}
	for _, wv := range r.Waves {
		for _, n := range wv.Nodes {
			if n.Identity == "w9" {
				t.Errorf("the held node is in wave %d", wv.Wave)
			}
		}
	}

	// Paused: the progress says so and the nodes not started wait.
	b.entry.Rollout.Paused, b.entry.Hold = true, ""
	b.op = b.putSpec(packer.FormatV2, 4, b.entry, entry("db", "1.0.0"))
	wait = fleet.NewWait(w.Tracker(), b.op, b.now)
	for _, id := range slices.Concat(b.waves...) {
		b.report(id, b.oldEntry(rollout.PausedHeld))
	}
	catchUp(t, w, func(*fleet.Tracker) error {
		if got := wait.Verdict(b.now).Progress; !strings.Contains(got, "; web paused at wave 1 of 3, max_failed 1: 0 of 1 used") {
			return fmt.Errorf("progress %q, want the rollout paused", got)
		}
		return nil
	})
}
