package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// rolloutBench is a fleet of five nodes that ran web 2.0.0 (checksum
// old) and a live spec rolling web 2.0.1 (checksum new) out in waves 1,
// 50%, 100% with a 30s pause.
type rolloutBench struct {
	*bench
	entry    spec.Machine
	op       *packer.Opened // the live spec
	old, new string
	waves    [][]string // as the agents rank them
	now      time.Time
	docs     map[string]nodestatus.Document
}

func newRolloutBench(t *testing.T, stale string) *rolloutBench {
	t.Helper()
	b := &rolloutBench{bench: newBench(t), now: time.Now().UTC().Truncate(time.Second), docs: map[string]nodestatus.Document{}}
	b.entry = entry("web", "2.0.1")
	b.entry.Rollout = &spec.Rollout{Waves: []string{"1", "50%", "100%"}, Pause: spec.Duration(30 * time.Second), Stale: stale}
	b.old, b.new = entry("web", "2.0.0").Checksum, b.entry.Checksum
	b.op = b.putSpec(packer.FormatV2, 2, b.entry, entry("db", "1.0.0"))
	ids := []string{"w1", "w2", "w3", "w4", "w5"}
	policy, err := rollout.NewPolicy(b.entry.Rollout)
	if err != nil {
		t.Fatal(err)
	}
	b.waves = rollout.Assign(ids, "web", b.new, policy.Waves)
	for _, id := range ids {
		b.report(id, b.oldEntry(""))
	}
	// A node the entry does not select is in no wave.
	skipped := doc("db1", 2, b.now)
	skipped.Applied.Digest = b.op.Digest
	skipped.Entries = []nodestatus.Entry{{Name: "web", Outcome: "skipped", Checksum: b.new, Reason: "match does not select this node"}}
	b.putDoc(skipped)
	return b
}

// oldEntry is web on 2.0.0, held by the rollout with reason (or not yet
// on the spec, without one).
func (b *rolloutBench) oldEntry(reason string) nodestatus.Entry {
	e := nodestatus.Entry{Name: "web", Outcome: "unchanged", Version: "2.0.0", Checksum: b.old, Installed: b.old, Health: "healthy", HealthyAt: b.now.Add(-time.Hour)}
	if reason != "" {
		e.Outcome, e.Checksum, e.Reason, e.Health, e.HealthyAt = "held", b.new, reason, "", time.Time{}
	}
	return e
}

// newEntry is web on 2.0.1 with health h.
func (b *rolloutBench) newEntry(h rollout.Health, healthyAt time.Time) nodestatus.Entry {
	return nodestatus.Entry{Name: "web", Outcome: "updated", Version: "2.0.1", Checksum: b.new, Installed: b.new, Health: string(h), HealthyAt: healthyAt}
}

// report writes identity's document with entry e, updated now.
func (b *rolloutBench) report(identity string, e nodestatus.Entry) {
	b.t.Helper()
	d := doc(identity, 2, b.now)
	d.Applied.Digest = b.op.Digest
	d.Heartbeat = "1s"
	d.Entries = []nodestatus.Entry{e}
	b.docs[identity] = d
	b.putDoc(d)
}

// silence makes identity's document 10s old: with its 1s heartbeat, the
// agent stopped reporting.
func (b *rolloutBench) silence(identity string) {
	b.t.Helper()
	d := b.docs[identity]
	d.UpdatedAt = b.now.Add(-10 * time.Second)
	b.docs[identity] = d
	b.putDoc(d)
}

// agentsDecide returns the decision each node's agent makes from the same
// documents (rollout.Decide over nodestatus.NodeOf, as an agent's manager
// does).
func (b *rolloutBench) agentsDecide(t *testing.T) map[string]rollout.Decision {
	t.Helper()
	policy, err := rollout.NewPolicy(b.entry.Rollout)
	if err != nil {
		t.Fatal(err)
	}
	var view []rollout.Node
	for _, d := range b.docs {
		if n, ok := nodestatus.NodeOf(&d, "web", b.now); ok {
			view = append(view, n)
		}
	}
	out := map[string]rollout.Decision{}
	for id := range b.docs {
		out[id] = rollout.Decide(policy, id, "web", b.new, view, b.now)
	}
	return out
}

// follow follows the buckets and waits until check accepts the tracker.
func follow(t *testing.T, b *bench) *fleet.Watcher {
	t.Helper()
	w, err := fleet.Follow(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// catchUp applies changes to w until check accepts its tracker.
func catchUp(t *testing.T, w *fleet.Watcher, check func(*fleet.Tracker) error) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := w.Next(t.Context(), 50*time.Millisecond); err != nil {
			return err
		}
		return check(w.Tracker())
	})
}

// webRollout returns web's rollout from t at now.
func webRollout(t *testing.T, tr *fleet.Tracker, now time.Time) fleet.Rollout {
	t.Helper()
	rs := tr.Rollouts(now)
	if len(rs) != 1 || rs[0].Machine != "web" {
		t.Fatalf("Rollouts() = %+v, want web's alone (db has no policy)", rs)
	}
	return rs[0]
}

// states returns "identity state detail" per node, wave by wave.
func states(r fleet.Rollout) [][]string {
	out := make([][]string, len(r.Waves))
	for i, w := range r.Waves {
		out[i] = []string{}
		for _, n := range w.Nodes {
			out[i] = append(out[i], strings.TrimSpace(fmt.Sprintf("%s %s %s %s", n.Identity, n.State, n.Version, n.Detail)))
		}
	}
	return out
}

// TestRolloutWaitsWhenWaveOneStopsReporting: the node of wave 1 installs
// 2.0.1 and stops reporting; the agents hold the rollout until it reports
// again (it may be failing over to another server), and so does the view:
// not halted, under way at wave 1, with the versions named on both sides
// and each later node's detail the agents' own decision.
func TestRolloutWaitsWhenWaveOneStopsReporting(t *testing.T) {
	b := newRolloutBench(t, "")
	first := b.waves[0][0]
	b.report(first, b.newEntry(rollout.Pending, time.Time{}))
	b.silence(first)
	halt := "waiting for wave 1 (node " + first + " stopped reporting)"
	for _, id := range slices.Concat(b.waves[1:]...) {
		b.report(id, b.oldEntry("held: "+halt))
	}
	tr, err := fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := webRollout(t, tr, b.now)
	if r.Halted || r.HaltedAt != 0 || r.Current != 1 || r.Done || r.Halt != nil {
		t.Errorf("rollout = halted %v at %d (%q), halt %+v, current %d, done %v; want under way at wave 1, waiting for %s", r.Halted, r.HaltedAt, r.Reason, r.Halt, r.Current, r.Done, first)
	}
	if d := r.Waves[1].Decision; d.Waiting != (rollout.Wait{Wave: 1, Node: first, What: "stopped reporting", Stale: true}) {
		t.Errorf("wave 2's decision = %+v, want it waiting for %s, which stopped reporting", d, first)
	}
	if r.New != (fleet.Version{Name: "2.0.1", Checksum: b.new}) || !cmp.Equal(r.Old, []fleet.Version{{Name: "2.0.0", Checksum: b.old}}) ||
		r.NewVersion != "2.0.1" || !cmp.Equal(r.OldVersions, []string{"2.0.0"}) {
		t.Errorf("versions: new %+v, old %+v; want 2.0.0 → 2.0.1 by name", r.New, r.Old)
	}
	want := [][]string{{first + " stale 2.0.1 no update for 10s"}}
	for _, w := range b.waves[1:] {
		var nodes []string
		for _, id := range w {
			nodes = append(nodes, id+" held 2.0.0 "+halt)
		}
		want = append(want, nodes)
	}
	if diff := cmp.Diff(want, states(r)); diff != "" {
		t.Errorf("waves (-want +got):\n%s", diff)
	}
	// The agents decide the same from the same documents.
	decisions := b.agentsDecide(t)
	for i, w := range r.Waves {
		for _, n := range w.Nodes {
			if d := decisions[n.Identity]; d != w.Decision {
				t.Errorf("%s (wave %d): the agent decides %+v, the view says %+v", n.Identity, i+1, d, w.Decision)
			}
		}
	}
}

// TestRolloutPausesAndNamesVersions follows a rollout with a watch: wave 1
// healthy starts the pause (when wave 2 may start, and the agents say the
// same); a rollback in wave 2 halts it, naming the version it halted by
// name although no node runs it any more; the view that followed
// remembers the version names a fresh read cannot know.
func TestRolloutPausesAndNamesVersions(t *testing.T) {
	b := newRolloutBench(t, "")
	w := follow(t, b.bench)
	first, second := b.waves[0][0], b.waves[1]
	healthyAt := b.now.Add(-10 * time.Second)
	b.report(first, b.newEntry(rollout.Healthy, healthyAt))
	for _, id := range slices.Concat(b.waves[1:]...) {
		b.report(id, b.oldEntry("held: wave 1 is healthy; pausing 20s before wave 2"))
	}
	catchUp(t, w, func(tr *fleet.Tracker) error {
		r := webRollout(t, tr, b.now)
		for _, w := range r.Waves[1:] {
			for _, n := range w.Nodes {
				if n.State != fleet.StateHeld {
					return fmt.Errorf("%s is %s, want held", n.Identity, n.State)
				}
			}
		}
		return nil
	})
	r := webRollout(t, w.Tracker(), b.now)
	if !r.PauseUntil.Equal(healthyAt.Add(30*time.Second)) || r.Pause(b.now) != 20*time.Second || r.Halted || r.Done {
		t.Errorf("rollout: pause until %v (%v left), halted %v, done %v; want wave 2 starting at %v", r.PauseUntil, r.Pause(b.now), r.Halted, r.Done, healthyAt.Add(30*time.Second))
	}
	decisions := b.agentsDecide(t)
	for _, id := range second {
		if d := decisions[id]; d != r.Waves[1].Decision || d.PauseUntil != r.PauseUntil || d.Held != "held: wave 1 is healthy; pausing 20s before wave 2" {
			t.Errorf("%s: the agent decides %+v, the view says %+v", id, d, r.Waves[1].Decision)
		}
	}
	if got := states(r)[2][0]; got != b.waves[2][0]+" held 2.0.0 waiting for wave 2 (node "+second[0]+" is not on the new version yet)" {
		t.Errorf("wave 3's first node: %q, want it waiting for wave 2", got)
	}

	// Wave 2 starts; its first node rolls 2.0.1 back. The rollout halts at
	// wave 2, and names 2.0.1 although no node runs it any more.
	b.report(second[0], b.newEntry(rollout.Pending, time.Time{}))
	catchUp(t, w, func(tr *fleet.Tracker) error {
		if v := tr.Version("web", b.new); v != "2.0.1" {
			return fmt.Errorf("version of the new checksum %q", v)
		}
		return nil
	})
	b.report(first, b.oldEntry(""))
	reason := "version " + b.new[:12] + " unhealthy: not RUNNING within 10s; rolled back to the previous version"
	b.report(second[0], nodestatus.Entry{Name: "web", Outcome: "rolled_back", Version: "2.0.0", Checksum: b.new, Installed: b.old, Health: "rolled_back", Reason: reason})
	catchUp(t, w, func(tr *fleet.Tracker) error {
		if r := webRollout(t, tr, b.now); !r.Halted {
			return errors.New("not halted yet")
		}
		return nil
	})
	r = webRollout(t, w.Tracker(), b.now)
	if r.HaltedAt != 2 || r.Reason != "node "+second[0]+": "+reason || r.New.Name != "2.0.1" || !cmp.Equal(r.OldVersions, []string{"2.0.0"}) {
		t.Errorf("after the rollback: halted at %d (%q), new %+v, old %v; want wave 2, the reason and 2.0.0 → 2.0.1", r.HaltedAt, r.Reason, r.New, r.OldVersions)
	}
	fresh, err := fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := webRollout(t, fresh, b.now); r.New.Name != "" || r.New.String() != b.new[:12] || r.HaltedAt != 2 {
		t.Errorf("a fresh read: new %+v (%s), halted at %d; want the checksum alone (no node runs 2.0.1) and the same halt", r.New, r.New, r.HaltedAt)
	}

	// A spec pins 2.0.1 again everywhere and every node runs it healthy:
	// done, and the view that followed still names what it replaced.
	for _, id := range slices.Concat(b.waves...) {
		b.report(id, b.newEntry(rollout.Healthy, b.now.Add(-time.Hour)))
	}
	catchUp(t, w, func(tr *fleet.Tracker) error {
		if r := webRollout(t, tr, b.now); !r.Done {
			return fmt.Errorf("not done: %+v", states(r))
		}
		return nil
	})
	if r := webRollout(t, w.Tracker(), b.now); !cmp.Equal(r.OldVersions, []string{"2.0.0"}) || r.New.Name != "2.0.1" || r.Halted || r.Current != 0 {
		t.Errorf("done, followed: old %v, new %+v, halted %v, current %d; want 2.0.0 → 2.0.1", r.OldVersions, r.New, r.Halted, r.Current)
	}
	fresh, err = fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := webRollout(t, fresh, b.now); len(r.OldVersions) != 0 || r.New.Name != "2.0.1" || !r.Done {
		t.Errorf("done, a fresh read: old %v, new %+v, done %v; want 2.0.1 and nothing older known", r.OldVersions, r.New, r.Done)
	}
}

// TestRolloutSkipsStale: with stale: skip, a node that stopped reporting
// is left out and the others are ranked without it, as the agents do.
func TestRolloutSkipsStale(t *testing.T) {
	b := newRolloutBench(t, spec.StaleSkip)
	first := b.waves[0][0]
	b.silence(first)
	tr, err := fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := webRollout(t, tr, b.now)
	others := slices.DeleteFunc(slices.Concat(b.waves...), func(id string) bool { return id == first })
	policy, _ := rollout.NewPolicy(b.entry.Rollout)
	want := rollout.Assign(others, "web", b.new, policy.Waves)
	var got [][]string
	for _, w := range r.Waves {
		var ids []string
		for _, n := range w.Nodes {
			ids = append(ids, n.Identity)
		}
		got = append(got, ids)
	}
	if !cmp.Equal(r.SkippedStale, []string{first}) || !cmp.Equal(got, want) || r.Halted {
		t.Errorf("skip stale: left out %v, waves %v, halted %v; want %s left out and waves %v", r.SkippedStale, got, r.Halted, first, want)
	}
	decisions := b.agentsDecide(t)
	for _, w := range r.Waves {
		for _, n := range w.Nodes {
			if decisions[n.Identity] != w.Decision {
				t.Errorf("%s: the agent decides %+v, the view %+v", n.Identity, decisions[n.Identity], w.Decision)
			}
		}
	}
}

// TestFollowEqualsRead: a view kept current by a watch, through puts and
// deletes of status documents and updates of the spec, equals a fresh read
// of the buckets after every step.
func TestFollowEqualsRead(t *testing.T) {
	b := newRolloutBench(t, "")
	w := follow(t, b.bench)
	ids := slices.Concat(b.waves...)
	steps := []func(){
		func() { b.report(b.waves[0][0], b.newEntry(rollout.Pending, time.Time{})) },
		func() { b.report(b.waves[0][0], b.newEntry(rollout.Healthy, b.now.Add(-time.Minute))) },
		func() { b.report(ids[1], b.oldEntry("held: waiting for wave 1 (node x is pending)")) },
		func() { b.deleteDoc(ids[2]) },
		func() { b.putRaw("junk", []byte("{")) },
		func() { b.silence(ids[3]) },
		func() { b.putSpec(packer.FormatV2, 3, entry("web", "2.0.2"), entry("db", "1.0.0")) },
		func() {
			d := doc("late", 3, b.now)
			d.Applied.Stale = true
			b.putDoc(d)
		},
		func() { b.putSpec(packer.FormatV2, 4, b.entry) },
		func() {
			if err := b.specKV.Delete(t.Context(), "machines"); err != nil {
				t.Fatal(err)
			}
		},
		func() { b.deleteDoc("junk") },
	}
	// Names a watch learned and a fresh read cannot know are left out.
	normal := func(v fleet.View) fleet.View {
		for i := range v.Rollouts {
			r := &v.Rollouts[i]
			r.New.Name, r.NewVersion, r.Old, r.OldVersions = "", "", nil, nil
		}
		v.Spec.Opened, v.Spec.Err = nil, nil
		return v
	}
	for i, step := range steps {
		step()
		natstest.Eventually(t, 10*time.Second, func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if _, err := w.Next(ctx, 50*time.Millisecond); err != nil {
				return err
			}
			fresh, err := fleet.Read(ctx, b.js, fleet.Options{})
			if err != nil {
				return err
			}
			followed, read := normal(w.Tracker().View(b.now)), normal(fresh.View(b.now))
			if diff := cmp.Diff(read, followed, cmp.Comparer(func(a, b error) bool { return fmt.Sprint(a) == fmt.Sprint(b) })); diff != "" {
				return fmt.Errorf("step %d: the followed view differs from a fresh read (-read +followed):\n%s", i+1, diff)
			}
			return nil
		})
	}
}
