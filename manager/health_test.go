package manager

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/spec"
)

// gated returns entry e with a health gate: healthy once its machine
// enters HEALTHY within a minute, unhealthy at once in BROKEN.
func gated(e spec.Machine) spec.Machine {
	e.Health = &spec.Health{States: []string{"HEALTHY"}, Within: spec.Duration(time.Minute), FailStates: []string{"BROKEN"}}
	return e
}

// pass reconciles env and checks the "name outcome" results and what runs.
func (f *fixture) pass(env []byte, want []string, running ...string) PassReport {
	f.t.Helper()
	rep := f.r.Reconcile(f.t.Context(), env, ReconcileOptions{})
	if got := outcomes(rep); !slices.Equal(got, want) {
		f.t.Fatalf("Reconcile() = %v (%v), want %v", got, rep.Err, want)
	}
	if got := f.running(); !slices.Equal(got, running) {
		f.t.Fatalf("running = %v, want %v", got, running)
	}
	return rep
}

// result returns the result of name in rep.
func result(t *testing.T, rep PassReport, name string) MachineResult {
	t.Helper()
	for _, m := range rep.Machines {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no result for %s in %+v", name, rep.Machines)
	return MachineResult{}
}

func TestHealthGateUpgradeBecomesHealthy(t *testing.T) {
	f := newFixture(t, nil)
	f.pass(f.seal(1, f.entry("web", "1", "")), []string{"web installed"}, "web@1")
	v2 := f.seal(2, gated(f.entry("web", "2", "")))
	rep := f.pass(v2, []string{"web updated"}, "web@2")
	if r := result(t, rep, "web"); r.Health != rollout.Pending || rep.NextCheck <= 0 || rep.NextCheck > HealthPoll {
		t.Fatalf("after the upgrade web = %+v, next check %v; want pending, checked again within %v", r, rep.NextCheck, HealthPoll)
	}
	f.advance(10 * time.Second)
	f.host.enter("web", "HEALTHY", f.clock())
	rep = f.pass(v2, []string{"web unchanged"}, "web@2")
	if r := result(t, rep, "web"); r.Health != rollout.Healthy || !r.HealthyAt.Equal(f.clock()) || rep.NextCheck != 0 {
		t.Errorf("after HEALTHY web = %+v, next check %v; want healthy at %v, nothing pending", r, rep.NextCheck, f.clock())
	}
	// A fail state later does not undo a passed gate.
	f.advance(2 * time.Minute)
	f.host.enter("web", "BROKEN", f.clock())
	f.pass(v2, []string{"web unchanged"}, "web@2")
}

func TestHealthGateRollsBackAnUnhealthyUpgrade(t *testing.T) {
	for _, tt := range []struct {
		name   string
		reason string
		fail   func(f *fixture)
	}{
		{"not healthy in time", "not HEALTHY within 1m0s", func(f *fixture) { f.advance(61 * time.Second) }},
		{"a fail state", "entered BROKEN", func(f *fixture) { f.advance(time.Second); f.host.enter("web", "BROKEN", f.clock()) }},
		// A fail state counts even when the healthy state follows it
		// before the next pass looks.
		{"a fail state, then the healthy one", "entered BROKEN", func(f *fixture) {
			f.advance(time.Second)
			f.host.enter("web", "BROKEN", f.clock())
			f.advance(time.Second)
			f.host.enter("web", "HEALTHY", f.clock())
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.pass(f.seal(1, f.entry("web", "1", "")), []string{"web installed"}, "web@1")
			v2 := f.seal(2, gated(f.entry("web", "2", "")))
			f.pass(v2, []string{"web updated"}, "web@2")
			tt.fail(f)
			rep := f.pass(v2, []string{"web rolled_back"}, "web@1")
			r := result(t, rep, "web")
			if r.Health != rollout.RolledBack || !strings.Contains(r.Reason, tt.reason) || r.Installed != f.entry("web", "1", "").Checksum {
				t.Errorf("web = %+v, want rolled_back (%s), version 1 installed", r, tt.reason)
			}
			// The bad version is not tried again while the spec pins it.
			before := f.inst.downloads
			f.advance(time.Hour)
			rep = f.pass(v2, []string{"web rolled_back"}, "web@1")
			if f.inst.downloads != before || !strings.Contains(result(t, rep, "web").Reason, "not tried again") {
				t.Errorf("the unhealthy version was downloaded again (%d downloads) or not reported: %+v", f.inst.downloads-before, rep.Machines)
			}
			// Another checksum is tried.
			f.pass(f.seal(3, gated(f.entry("web", "3", ""))), []string{"web updated"}, "web@3")
		})
	}
}

// TestHealthGateRollsBackAnUpgradeFoundInstalled checks that an agent
// restarted while an upgrade's gate was pending still knows the version is
// an upgrade (its install record keeps the previous one) and rolls it back
// rather than stopping it.
func TestHealthGateRollsBackAnUpgradeFoundInstalled(t *testing.T) {
	f := newFixture(t, nil)
	f.pass(f.seal(1, f.entry("web", "1", "")), []string{"web installed"}, "web@1")
	v2 := f.seal(2, gated(f.entry("web", "2", "")))
	f.pass(v2, []string{"web updated"}, "web@2")
	var err error
	if f.r, err = NewReconciler(f.r.cfg); err != nil { // the agent restarts
		t.Fatal(err)
	}
	f.advance(time.Second)
	f.pass(v2, []string{"web unchanged"}, "web@2")
	f.advance(time.Minute)
	rep := f.pass(v2, []string{"web rolled_back"}, "web@1")
	if r := result(t, rep, "web"); r.Health != rollout.RolledBack || r.Installed != f.entry("web", "1", "").Checksum {
		t.Errorf("web = %+v, want rolled_back, version 1 installed", r)
	}
}

func TestHealthGateStopsAnUnhealthyFirstInstall(t *testing.T) {
	f := newFixture(t, nil)
	env := f.seal(1, gated(f.entry("cache", "1", "")))
	f.pass(env, []string{"cache installed"}, "cache@1")
	f.advance(61 * time.Second)
	rep := f.pass(env, []string{"cache unhealthy"}, []string{}...)
	if r := result(t, rep, "cache"); !strings.Contains(r.Reason, "stopped (there is no previous version to roll back to)") {
		t.Errorf("cache = %+v, want stopped with the reason", r)
	}
	f.pass(env, []string{"cache unhealthy"}, []string{}...)
}

// fleet is a FleetView the test sets.
type fleet struct{ nodes []rollout.Node }

func (v *fleet) Nodes(context.Context, string) ([]rollout.Node, error) { return v.nodes, nil }

func TestRolloutHoldsLaterWaves(t *testing.T) {
	view := &fleet{}
	f := newFixture(t, func(c *ReconcilerConfig) { c.Fleet = view })
	f.pass(f.seal(1, f.entry("web", "1", "")), []string{"web installed"}, "web@1")
	v2e := gated(f.entry("web", "2", ""))
	v2e.Rollout = &spec.Rollout{Waves: []string{"1", "100%"}}
	v2 := f.seal(2, v2e)

	v3e := gated(f.entry("web", "3", ""))
	v3e.Rollout = &spec.Rollout{Waves: []string{"1", "100%"}, Pause: spec.Duration(40 * time.Second)}

	// Two nodes: this one and another that goes first with 2 and 3 (the
	// first wave does not wait).
	me, other := "web1.example.net", ""
	for i := 2; other == ""; i++ {
		o := fmt.Sprintf("web%d.example.net", i)
		if rollout.Assign([]string{me, o}, "web", v2e.Checksum, mustWaves(t, v2e.Rollout.Waves))[0][0] == o &&
			rollout.Assign([]string{me, o}, "web", v3e.Checksum, mustWaves(t, v3e.Rollout.Waves))[0][0] == o {
			other = o
		}
	}
	oldNode := func(id string) rollout.Node {
		return rollout.Node{Identity: id, Checksum: f.entry("web", "1", "").Checksum, Health: rollout.Healthy}
	}
	view.nodes = []rollout.Node{oldNode(me), oldNode(other)}
	rep := f.pass(v2, []string{"web held"}, "web@1")
	r := result(t, rep, "web")
	if !strings.HasPrefix(r.Reason, "held: waiting for wave 1 (node "+other) || r.Installed != f.entry("web", "1", "").Checksum ||
		rep.NextCheck != HeldRecheck || !rep.FleetWait {
		t.Fatalf("web = %+v, next %v, fleet wait %v; want held for wave 1, version 1 installed, no poll but the fleet's changes and a check after %v",
			r, rep.NextCheck, rep.FleetWait, HeldRecheck)
	}
	view.nodes[1] = rollout.Node{Identity: other, Checksum: v2e.Checksum, Health: rollout.RolledBack, Reason: "entered BROKEN"}
	rep = f.pass(v2, []string{"web held"}, "web@1")
	if r := result(t, rep, "web"); r.Reason != "held: rollout halted at wave 1 (node "+other+": entered BROKEN)" {
		t.Errorf("after wave 1 rolled back web = %+v, want the halt and why", r)
	}
	view.nodes[1] = rollout.Node{Identity: other, Checksum: v2e.Checksum, Health: rollout.Healthy, HealthyAt: f.clock()}
	f.pass(v2, []string{"web updated"}, "web@2")

	// With a pause, the held node looks again when the pause ends.
	view.nodes[1] = rollout.Node{Identity: other, Checksum: v3e.Checksum, Health: rollout.Healthy, HealthyAt: f.clock().Add(-30 * time.Second)}
	rep = f.pass(f.seal(3, v3e), []string{"web held"}, "web@2")
	if rep.NextCheck != 10*time.Second || !rep.FleetWait {
		t.Errorf("pausing: next check %v, fleet wait %v; want 10s (the pause's end), true", rep.NextCheck, rep.FleetWait)
	}
}

func mustWaves(t *testing.T, w []string) []spec.Wave {
	t.Helper()
	out, err := spec.ParseWaves(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHoldKeepsWhatRuns: an entry whose hold selects this node keeps
// exactly what runs there: no upgrade of web, no install of db, no purge
// when the entry's version changes; a hold that does not select the node
// changes nothing; a hold that cannot be evaluated keeps the installed
// copy and fails the entry.
func TestHoldKeepsWhatRuns(t *testing.T) {
	view := &fleet{}
	f := newFixture(t, func(c *ReconcilerConfig) { c.Fleet = view })
	v1 := f.entry("web", "1", "")
	f.pass(f.seal(1, v1), []string{"web installed"}, "web@1")

	v2 := gated(f.entry("web", "2", ""))
	v2.Rollout = &spec.Rollout{Waves: []string{"100%"}}
	v2.Hold = "identity('^web1[.]')"
	db := f.entry("db", "1", "")
	db.Hold = "facts.role == 'web'"
	rep := f.pass(f.seal(2, v2, db), []string{"web held", "db held"}, "web@1")
	r := result(t, rep, "web")
	if r.Hold != v2.Hold || r.Installed != v1.Checksum || r.Reason != `held (hold): hold "identity('^web1[.]')" selects this node; it keeps what it runs` {
		t.Errorf("web held by its hold = %+v, want the hold, version 1 installed and why", r)
	}
	if r := result(t, rep, "db"); r.Hold != db.Hold || r.Installed != "" {
		t.Errorf("db held by its hold = %+v, want the hold and nothing installed", r)
	}
	if rep.NextCheck != 0 || f.inst.downloads != 1 {
		t.Errorf("next check %v, %d downloads; want none pending and only the first install", rep.NextCheck, f.inst.downloads)
	}

	v2.Hold = "identity('^db')"
	f.pass(f.seal(3, v2), []string{"web updated"}, "web@2")

	v2.Hold = "get_fact('role') > 3"
	rep = f.pass(f.seal(4, v2), []string{"web failed"}, "web@2")
	if r := result(t, rep, "web"); !strings.HasPrefix(r.Reason, `hold "get_fact('role') > 3": `) || r.Hold != v2.Hold || !r.Retryable {
		t.Errorf("a hold that cannot be evaluated: web = %+v, want a retryable failure naming the hold", r)
	}
}
