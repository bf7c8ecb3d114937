package rollout

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mms-io/mms/spec"
)

// referenceDecide is the rule as Decide wrote it before Evaluate: one node
// at a time, scanning the earlier waves (with the failure budget and the
// pause added since). Evaluate must give every node the decision this
// gives it.
func referenceDecide(p Policy, me, machine, checksum string, view []Node, now time.Time) (proceed, halted bool, held string, retry time.Duration) {
	byID := map[string]Node{}
	ids := []string{me}
	for _, n := range view {
		if n.Stale && p.SkipStale && n.Identity != me {
			continue
		}
		byID[n.Identity] = n
		ids = append(ids, n.Identity)
	}
	waves := Assign(ids, machine, checksum, p.Waves)
	mine := slices.IndexFunc(waves, func(w []string) bool { return slices.Contains(w, me) })
	r := referenceWave(p, waves[:mine], byID, checksum)
	switch {
	case r.halt.Wave > 0:
		return false, true, fmt.Sprintf("%s at wave %d (%s)", HaltedPrefix, r.halt.Wave, r.halt), 0
	case p.Paused:
		return false, false, PausedHeld, 0
	case r.held != "":
		return false, false, r.held, 0
	}
	if rest := r.lastHealthy.Add(p.Pause).Sub(now); mine > 0 && p.Pause > 0 && rest > 0 {
		return false, false, fmt.Sprintf("held: wave %d is healthy; pausing %v before wave %d", mine, rest.Round(time.Second), mine+1), rest
	}
	return true, false, "", 0
}

// reference is what referenceWave finds in a run of waves.
type reference struct {
	halt        Halt
	held        string
	lastHealthy time.Time
	failed      []string
	finished    int
}

// referenceWave scans waves, wave by wave: a wave's failures count once
// the whole wave is seen, and halt past the budget unless a stale node
// comes first in the wave.
func referenceWave(p Policy, waves [][]string, byID map[string]Node, checksum string) reference {
	var r reference
	for i, members := range waves {
		firstFail := -1
		for j, id := range members {
			n := byID[id]
			switch {
			case n.Checksum == checksum && n.Health.bad():
				r.failed = append(r.failed, id)
				r.finished++
				if firstFail < 0 {
					firstFail = j
				}
			case n.Stale:
				if r.held == "" {
					r.held = fmt.Sprintf("held: waiting for wave %d (node %s stopped reporting)", i+1, id)
				}
			case n.Checksum != checksum || n.Health != Healthy:
				if r.held == "" {
					r.held = fmt.Sprintf("held: waiting for wave %d (node %s is %s)", i+1, id, waitingFor(n, checksum))
				}
			default:
				r.finished++
				if n.HealthyAt.After(r.lastHealthy) {
					r.lastHealthy = n.HealthyAt
				}
			}
		}
		allowed, judged := p.MaxFailed.Allowed(r.finished, p.MinDone)
		over := judged && len(r.failed) > allowed
		if over {
			id := r.failed[len(r.failed)-1]
			if firstFail >= 0 {
				id = members[firstFail]
			}
			r.halt = Halt{Wave: i + 1, Node: id, Reason: cmp.Or(byID[id].Reason, string(byID[id].Health))}
			if p.MaxFailed != (spec.Budget{}) {
				r.halt.Failed, r.halt.MaxFailed = len(r.failed), p.MaxFailed.String()
			}
			return r
		}
	}
	return r
}

// randomView is a view of n nodes with every kind of report: old and new
// versions, each health, stale nodes, nodes healthy at various times
// around now, an empty identity, and duplicates.
func randomView(rng *rand.Rand, n int, now time.Time) []Node {
	healths := []Health{Pending, Healthy, Healthy, Healthy, Unhealthy, RolledBack, Failed, ""}
	view := make([]Node, 0, n+2)
	for i := range n {
		node := Node{Identity: fmt.Sprintf("n%03d", i)}
		switch rng.IntN(4) {
		case 0:
			node.Checksum = "old"
		case 1:
		default:
			node.Checksum = "new"
		}
		node.Health = healths[rng.IntN(len(healths))]
		if node.Health == Healthy {
			node.HealthyAt = now.Add(time.Duration(rng.IntN(120)-90) * time.Second)
		}
		if node.Health.bad() && rng.IntN(2) == 0 {
			node.Reason = "not RUNNING within 10s"
		}
		node.Stale = rng.IntN(12) == 0
		view = append(view, node)
	}
	if n > 0 && rng.IntN(4) == 0 {
		dup := view[rng.IntN(n)]
		dup.Health = healths[rng.IntN(len(healths))]
		view = append(view, dup)
	}
	if rng.IntN(10) == 0 {
		view = append(view, Node{Checksum: "new", Health: Pending})
	}
	rng.Shuffle(len(view), func(i, j int) { view[i], view[j] = view[j], view[i] })
	return view
}

// TestEvaluateIsDecide: over random views (stale nodes, bad health,
// pending nodes, pauses, stale nodes skipped or not), the decision Decide
// gives each node is Evaluate's decision for its wave, and both are the
// per-node rule (referenceDecide); Evaluate's current wave, halt and done
// agree with the decisions.
func TestEvaluateIsDecide(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 3))
	policies := [][]string{{"100%"}, {"1", "100%"}, {"1", "50%", "100%"}, {"2", "10%", "50%", "100%"}, {"1", "2", "3", "100%"}}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	seen := map[string]int{} // decisions by kind, to show the views cover each
	for iter := range 400 {
		p := Policy{Waves: waves(t, policies[rng.IntN(len(policies))]...), SkipStale: rng.IntN(3) == 0, Paused: rng.IntN(8) == 0}
		if rng.IntN(2) == 0 {
			p.Pause = time.Duration(rng.IntN(60)+1) * time.Second
		}
		switch rng.IntN(4) {
		case 1:
			p.MaxFailed = spec.Budget{N: rng.IntN(3) + 1}
		case 2:
			p.MaxFailed, p.MinDone = spec.Budget{N: []int{10, 25, 50}[rng.IntN(3)], Share: true}, rng.IntN(5)
		}
		view := randomView(rng, rng.IntN(25), now)
		pr := Evaluate(p, "web", "new", view, now)
		if len(pr.Decisions) != len(pr.Waves) || len(pr.Waves) != len(p.Waves) {
			t.Fatalf("iteration %d: %d decisions for %d waves of a %d-wave policy", iter, len(pr.Decisions), len(pr.Waves), len(p.Waves))
		}
		ranked := map[string]bool{}
		for i, members := range pr.Waves {
			for _, id := range members {
				ranked[id] = true
				got, ok := pr.Decision(id)
				if !ok || got != pr.Decisions[i] || got.Wave != i+1 {
					t.Fatalf("iteration %d: Decision(%q) = %+v, %v; want wave %d's %+v", iter, id, got, ok, i+1, pr.Decisions[i])
				}
				if d := Decide(p, id, "web", "new", view, now); d != got {
					t.Fatalf("iteration %d, node %q: Decide() = %+v, Evaluate() gives its wave %+v\nview %+v", iter, id, d, got, view)
				}
				switch {
				case got.Waiting.Stale:
					seen["waiting for a stale node"]++
				case got.Halted && got.Halt.MaxFailed != "":
					seen["halted past a budget"]++
				case got.Halted:
					seen["halted by a failure"]++
				case got.Paused:
					seen["paused"]++
				case got.Wave > 1 && slices.ContainsFunc(pr.Waves[:got.Wave-1], func(w []string) bool {
					return slices.ContainsFunc(w, func(id string) bool { return slices.Contains(pr.Failed, id) })
				}):
					seen["going on within a budget"]++
				case got.Waiting.Wave > 0:
					seen["waiting"]++
				case !got.PauseUntil.IsZero():
					seen["pausing"]++
				case got.Wave > 1:
					seen["proceeding after wave 1"]++
				}
				proceed, halted, held, retry := referenceDecide(p, id, "web", "new", view, now)
				if got.Proceed != proceed || got.Halted != halted || got.Held != held || got.Retry != retry {
					t.Fatalf("iteration %d, node %q: Evaluate() = %+v, the per-node rule: proceed %v halted %v held %q retry %v\nview %+v",
						iter, id, got, proceed, halted, held, retry, view)
				}
				if got.Halted != (got.Halt.Wave > 0) || (got.Waiting.Wave > 0) != (!got.Proceed && !got.Halted && !got.Paused && got.PauseUntil.IsZero()) ||
					(!got.PauseUntil.IsZero() && got.PauseUntil.Sub(now) != got.Retry) {
					t.Fatalf("iteration %d, node %q: the structured fields do not match the decision: %+v", iter, id, got)
				}
			}
		}
		// A node that is not in the view (or left out as stale) is ranked
		// by Decide all the same: its decision is Evaluate's with it added.
		for _, n := range view {
			if ranked[n.Identity] {
				continue
			}
			with := append(slices.Clone(view), Node{Identity: n.Identity})
			with = slices.DeleteFunc(with, func(o Node) bool { return o.Identity == n.Identity && o.Stale })
			pw := Evaluate(p, "web", "new", with, now)
			want, _ := pw.Decision(n.Identity)
			if d := Decide(p, n.Identity, "web", "new", view, now); d != want {
				t.Fatalf("iteration %d, stale node %q left out: Decide() = %+v, want %+v", iter, n.Identity, d, want)
			}
		}
		// The rollout as a whole: the current wave is the first one with a
		// node neither healthy on the new version nor failed with it (or
		// stale); the halt is what a node after the last wave would be
		// told, and what every later wave is told; the failures and the
		// budget are those of all the waves; done is neither a current
		// wave nor a halt.
		wantCurrent := 0
		for i, members := range pr.Waves {
			for _, id := range members {
				n := nodeOf(view, id)
				bad := n.Checksum == "new" && n.Health.bad()
				if wantCurrent == 0 && (n.Stale || !bad && (n.Checksum != "new" || n.Health != Healthy)) {
					wantCurrent = i + 1
				}
			}
			if i+1 < len(pr.Waves) {
				if want := referenceWave(p, pr.Waves[:i+1], byIdentity(view), "new").halt; pr.Decisions[i+1].Halt != want {
					t.Fatalf("iteration %d: wave %d is told %+v, want %+v", iter, i+2, pr.Decisions[i+1].Halt, want)
				}
			}
		}
		all := referenceWave(p, pr.Waves, byIdentity(view), "new")
		if pr.Halt != all.halt {
			t.Fatalf("iteration %d: Halt = %+v, want %+v", iter, pr.Halt, all.halt)
		}
		if pr.Current != wantCurrent {
			t.Fatalf("iteration %d: Current = %d, want %d", iter, pr.Current, wantCurrent)
		}
		if all.halt.Wave == 0 { // the reference stops at the halt
			allowed, judged := p.MaxFailed.Allowed(all.finished, p.MinDone)
			if !slices.Equal(pr.Failed, all.failed) || pr.Finished != all.finished || pr.Allowed != allowed || pr.Judged != judged {
				t.Fatalf("iteration %d: failed %v of %d done, %d allowed (judged %v); want %v of %d, %d (%v)",
					iter, pr.Failed, pr.Finished, pr.Allowed, pr.Judged, all.failed, all.finished, allowed, judged)
			}
		}
		if pr.Done != (pr.Current == 0 && pr.Halt.Wave == 0) {
			t.Fatalf("iteration %d: Done = %v with current wave %d and halt %+v", iter, pr.Done, pr.Current, pr.Halt)
		}
	}
	for _, kind := range []string{"waiting for a stale node", "halted by a failure", "halted past a budget", "going on within a budget", "paused", "waiting", "pausing", "proceeding after wave 1"} {
		if seen[kind] < 10 {
			t.Errorf("the random views gave %d decisions %s, want more to check the rule on: %v", seen[kind], kind, seen)
		}
	}
}

// byIdentity indexes view by identity, the last node of an identity
// counting.
func byIdentity(view []Node) map[string]Node {
	out := make(map[string]Node, len(view))
	for _, n := range view {
		out[n.Identity] = n
	}
	return out
}

// nodeOf returns the last node of view with identity id.
func nodeOf(view []Node, id string) Node {
	var out Node
	for _, n := range view {
		if n.Identity == id {
			out = n
		}
	}
	return out
}

// BenchmarkRolloutView compares the two ways to compute every node's
// decision for a view of n nodes: one Evaluate, or one Decide per node
// (what a fleet view would cost without Evaluate); and what one agent's
// decision costs: Decide (through Evaluate) beside the former per-node
// rule (referenceDecide).
func BenchmarkRolloutView(b *testing.B) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	p := Policy{Waves: waves(b, "1", "10%", "50%", "100%"), Pause: time.Minute}
	for _, n := range []int{100, 1000} {
		view := randomView(rand.New(rand.NewPCG(1, uint64(n))), n, now)
		b.Run(fmt.Sprintf("evaluate/%d", n), func(b *testing.B) {
			for b.Loop() {
				Evaluate(p, "web", "new", view, now)
			}
		})
		me := view[len(view)/2].Identity
		b.Run(fmt.Sprintf("decide-one/%d", n), func(b *testing.B) {
			for b.Loop() {
				Decide(p, me, "web", "new", view, now)
			}
		})
		b.Run(fmt.Sprintf("reference-one/%d", n), func(b *testing.B) {
			for b.Loop() {
				referenceDecide(p, me, "web", "new", view, now)
			}
		})
		b.Run(fmt.Sprintf("decide-each/%d", n), func(b *testing.B) {
			for b.Loop() {
				for _, node := range view {
					Decide(p, node.Identity, "web", "new", view, now)
				}
			}
		})
	}
}
