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
