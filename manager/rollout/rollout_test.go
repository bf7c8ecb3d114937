package rollout

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/spec"
)

func waves(t testing.TB, w ...string) []spec.Wave {
	t.Helper()
	out, err := spec.ParseWaves(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("web-%03d.example.net", i)
	}
	return out
}

// TestAssignProperties: every node computes the same waves from the same
// view whatever order it reads it in; the sizes are the policy's; a new
// checksum reshuffles the order; one more node moves few others.
func TestAssignProperties(t *testing.T) {
	policies := [][]string{{"100%"}, {"1", "100%"}, {"1", "10%", "50%", "100%"}, {"2", "5", "25%", "100%"}, {"33%", "66%", "100%"}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, pw := range policies {
		ws := waves(t, pw...)
		for _, n := range []int{1, 2, 3, 7, 10, 40, 101, 500} {
			ids := names(n)
			base := Assign(ids, "web", "sum1", ws)

			// Same view, any order, duplicates: the same waves.
			shuffled := slices.Clone(ids)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			shuffled = append(shuffled, shuffled[:n/3]...)
			if got := Assign(shuffled, "web", "sum1", ws); !slices.EqualFunc(got, base, slices.Equal) {
				t.Fatalf("%v n=%d: waves depend on the order of the view", pw, n)
			}

			// Sizes match the policy: cumulative counts or shares, all nodes once.
			total := 0
			for i, w := range base {
				total += len(w)
				if want := ws[i].Size(n); total != max(want, total-len(w)) {
					t.Fatalf("%v n=%d: after wave %d %d nodes, want %d", pw, n, i+1, total, want)
				}
			}
			if total != n {
				t.Fatalf("%v n=%d: waves hold %d nodes", pw, n, total)
			}

			// One more node moves at most two nodes per wave boundary.
			grown := Assign(append(slices.Clone(ids), "new-node.example.net"), "web", "sum1", ws)
			if moved := movedNodes(base, grown); moved > 2*len(ws) {
				t.Fatalf("%v n=%d: adding a node moved %d others, want at most %d", pw, n, moved, 2*len(ws))
			}
		}
	}
	// A new checksum reshuffles who goes first.
	ws := waves(t, "1", "100%")
	firsts := map[string]bool{}
	for i := range 20 {
		firsts[Assign(names(50), "web", fmt.Sprintf("sum%d", i), ws)[0][0]] = true
	}
	if len(firsts) < 5 {
		t.Errorf("20 checksums put only %d different nodes first, want a reshuffle", len(firsts))
	}
}

// movedNodes counts nodes of a that are in another wave in b.
func movedNodes(a, b [][]string) int {
	wave := map[string]int{}
	for i, w := range b {
		for _, id := range w {
			wave[id] = i
		}
	}
	moved := 0
	for i, w := range a {
		for _, id := range w {
			if wave[id] != i {
				moved++
			}
		}
	}
	return moved
}

func TestDecide(t *testing.T) {
	p := Policy{Waves: waves(t, "1", "50%", "100%"), Pause: 30 * time.Second}
	ids := names(6)
	order := Assign(ids, "web", "new", p.Waves) // [[1 node] [2 nodes] [3 nodes]]
	w1, w2, w3 := order[0][0], order[1], order[2]
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	old := func(id string) Node {
		return Node{Identity: id, Checksum: "old", Health: Healthy, HealthyAt: t0.Add(-time.Hour)}
	}
	view := func(edit func(map[string]Node)) []Node {
		m := map[string]Node{}
		for _, id := range ids {
			m[id] = old(id)
		}
		edit(m)
		var out []Node
		for _, id := range ids {
			out = append(out, m[id])
		}
		return out
	}
	healthy := func(id string, at time.Time) Node {
		return Node{Identity: id, Checksum: "new", Health: Healthy, HealthyAt: at}
	}
	tests := []struct {
		name    string
		me      string
		view    []Node
		now     time.Time
		proceed bool
		held    string
		retry   time.Duration
	}{
		{name: "wave 1 goes at once", me: w1, view: view(func(map[string]Node) {}), now: t0, proceed: true},
		{name: "wave 2 waits for wave 1", me: w2[0], view: view(func(map[string]Node) {}), now: t0,
			held: "held: waiting for wave 1 (node " + w1 + " is not on the new version yet)"},
		{name: "wave 2 waits while wave 1 is pending", me: w2[0], view: view(func(m map[string]Node) { m[w1] = Node{Identity: w1, Checksum: "new", Health: Pending} }), now: t0,
			held: "held: waiting for wave 1 (node " + w1 + " is pending)"},
		{name: "wave 2 pauses after wave 1 is healthy", me: w2[1], view: view(func(m map[string]Node) { m[w1] = healthy(w1, t0) }), now: t0.Add(10 * time.Second),
			held: "held: wave 1 is healthy; pausing 20s before wave 2", retry: 20 * time.Second},
		{name: "wave 2 goes after the pause", me: w2[1], view: view(func(m map[string]Node) { m[w1] = healthy(w1, t0) }), now: t0.Add(30 * time.Second), proceed: true},
		{name: "wave 3 waits for every node of wave 2", me: w3[0], view: view(func(m map[string]Node) {
			m[w1], m[w2[0]] = healthy(w1, t0), healthy(w2[0], t0)
		}), now: t0.Add(time.Hour), held: "held: waiting for wave 2 (node " + w2[1] + " is not on the new version yet)"},
		{name: "a rollback in wave 1 halts wave 3", me: w3[2], view: view(func(m map[string]Node) {
			m[w1] = Node{Identity: w1, Checksum: "new", Health: RolledBack, Reason: "not RUNNING within 1m0s"}
		}), now: t0, held: "held: rollout halted at wave 1 (node " + w1 + ": not RUNNING within 1m0s)"},
		{name: "a failure of an older version does not halt", me: w2[0], view: view(func(m map[string]Node) {
			m[w1] = healthy(w1, t0)
			m[w3[0]] = Node{Identity: w3[0], Checksum: "old", Health: Failed}
		}), now: t0.Add(time.Minute), proceed: true},
		{name: "a stale node holds the rollout by default", me: w2[0], view: view(func(m map[string]Node) { m[w1] = Node{Identity: w1, Stale: true} }), now: t0,
			held: "held: waiting for wave 1 (node " + w1 + " stopped reporting)"},
		{name: "a failure halts even after a stale node", me: w3[0], view: view(func(m map[string]Node) {
			m[w1] = Node{Identity: w1, Stale: true}
			m[w2[0]] = Node{Identity: w2[0], Checksum: "new", Health: Unhealthy, Reason: "not ready"}
		}), now: t0, held: "held: rollout halted at wave 2 (node " + w2[0] + ": not ready)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(p, tt.me, "web", "new", tt.view, tt.now)
			if d.Proceed != tt.proceed || d.Held != tt.held || d.Retry != tt.retry {
				t.Errorf("Decide() = %+v, want proceed %v held %q retry %v", d, tt.proceed, tt.held, tt.retry)
			}
			if strings.Contains(tt.held, "halted") != d.Halted {
				t.Errorf("Decide().Halted = %v for %q", d.Halted, d.Held)
			}
		})
	}
	// With stale: skip, the stale node is left out: the others re-rank
	// without it and the rollout goes on.
	skip := p
	skip.SkipStale = true
	vs := view(func(m map[string]Node) { m[w1] = Node{Identity: w1, Stale: true} })
	others := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == w1 })
	first := Assign(others, "web", "new", p.Waves)[0][0]
	if d := Decide(skip, first, "web", "new", vs, t0); !d.Proceed || d.Wave != 1 {
		t.Errorf("Decide(skip stale) for the new first node = %+v, want wave 1 proceeding", d)
	}
}

// TestDecideSameViewSameDecision: every node that reads the same view agrees
// on each node's wave and on the halt.
func TestDecideSameViewSameDecision(t *testing.T) {
	p := Policy{Waves: waves(t, "1", "10%", "100%")}
	ids := names(30)
	view := make([]Node, len(ids))
	for i, id := range ids {
		view[i] = Node{Identity: id, Checksum: "old", Health: Healthy}
	}
	for _, me := range ids {
		d1 := Decide(p, me, "db", "v2", view, time.Now())
		rev := slices.Clone(view)
		slices.Reverse(rev)
		d2 := Decide(p, me, "db", "v2", rev, time.Now())
		if d1 != d2 {
			t.Fatalf("node %s: %+v with the view in one order, %+v in another", me, d1, d2)
		}
	}
}

// TestFailureBudgetAndPause follows one rollout of ten nodes in waves 1,
// 50%, 100% through its failure budget: with max_failed 1 a failure in
// wave 1 rolls back there and wave 2 goes on; a second failure halts the
// waves after it, naming the budget; a paused policy starts no node.
func TestFailureBudgetAndPause(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ids := names(10)
	p := Policy{Waves: waves(t, "1", "50%", "100%"), MaxFailed: spec.Budget{N: 1}}
	plan := Assign(ids, "web", "new", p.Waves)
	view := func(failed ...string) []Node {
		var out []Node
		for _, w := range plan[:2] {
			for _, id := range w {
				n := Node{Identity: id, Checksum: "new", Health: Healthy, HealthyAt: now.Add(-time.Minute)}
				if slices.Contains(failed, id) {
					n.Health, n.Reason = RolledBack, "not ready within 3s"
				}
				out = append(out, n)
			}
		}
		for _, id := range plan[2] {
			out = append(out, Node{Identity: id, Checksum: "old", Health: Healthy})
		}
		return out
	}
	third := plan[2][0]

	pr := Evaluate(p, "web", "new", view(plan[0][0]), now)
	if d := pr.Decisions[2]; !d.Proceed {
		t.Errorf("one failure with max_failed 1: wave 3 is told %+v, want to proceed", d)
	}
	if !slices.Equal(pr.Failed, []string{plan[0][0]}) || pr.Allowed != 1 || !pr.Judged || pr.Halt.Wave != 0 || pr.Current != 3 || pr.Finished != 5 {
		t.Errorf("one failure: failed %v, allowed %d, halt %+v, current %d, finished %d; want the wave-1 node, 1, none, 3, 5", pr.Failed, pr.Allowed, pr.Halt, pr.Current, pr.Finished)
	}

	second := plan[1][1]
	pr = Evaluate(p, "web", "new", view(plan[0][0], second), now)
	want := fmt.Sprintf("held: rollout halted at wave 2 (2 nodes failed, more than max_failed 1 allows; node %s: not ready within 3s)", second)
	if d := Decide(p, third, "web", "new", view(plan[0][0], second), now); !d.Halted || d.Held != want {
		t.Errorf("two failures with max_failed 1: wave 3 is told %+v, want %q", d, want)
	}
	if pr.Halt.Wave != 2 || pr.Halt.Node != second || pr.Halt.Failed != 2 || pr.Done {
		t.Errorf("two failures: halt %+v, done %v; want wave 2 naming %s", pr.Halt, pr.Done, second)
	}

	// A share of 20% judged from 5 nodes done: one failure of five is
	// within it; two are not.
	share := Policy{Waves: p.Waves, MaxFailed: spec.Budget{N: 20, Share: true}, MinDone: 5}
	if d := Decide(share, third, "web", "new", view(plan[0][0]), now); !d.Proceed {
		t.Errorf("one failure of five with max_failed 20%%: %+v, want to proceed", d)
	}
	if d := Decide(share, third, "web", "new", view(plan[0][0], second), now); !d.Halted || !strings.Contains(d.Held, "more than max_failed 20% allows") {
		t.Errorf("two failures of five with max_failed 20%%: %+v, want halted", d)
	}
	// Before min_done nodes are done, a share is not judged: wave 2 goes
	// on after a failure in wave 1.
	early := Evaluate(Policy{Waves: p.Waves, MaxFailed: spec.Budget{N: 20, Share: true}, MinDone: 5}, "web", "new", view(plan[0][0])[:1], now)
	if d := early.Decisions[1]; !d.Proceed || early.Judged {
		t.Errorf("a failure in wave 1 before min_done: wave 2 is told %+v (judged %v), want to proceed", d, early.Judged)
	}
	// Without a budget the first failure halts, named as before.
	if d := Decide(Policy{Waves: p.Waves}, third, "web", "new", view(plan[0][0]), now); d.Held != fmt.Sprintf("held: rollout halted at wave 1 (node %s: not ready within 3s)", plan[0][0]) {
		t.Errorf("no budget: %+v", d)
	}

	// Paused: no node starts, wave 1 included; the nodes' state is kept.
	paused := p
	paused.Paused = true
	pr = Evaluate(paused, "web", "new", view(), now)
	for i, d := range pr.Decisions {
		if d.Proceed || !d.Paused || d.Held != PausedHeld {
			t.Errorf("paused: wave %d is told %+v, want held by the pause", i+1, d)
		}
	}
	if pr.Current != 3 {
		t.Errorf("paused: current wave %d, want 3", pr.Current)
	}
}
