// Package rollout decides, on each node and with no control server, when
// that node may move to a new version of a machine: the matching nodes
// upgrade in waves, a wave starts only when every node of the earlier
// waves is done with the new version (healthy, or failed and rolled back
// within the failure budget) and the pause has passed, failures past the
// budget halt the rollout for everyone after them, and a paused policy
// starts no node.
//
// Every node computes the same waves from the same view (the status
// documents in the MACHINES_STATUS bucket): the nodes are ranked by a hash
// of identity, machine name and checksum, so a new checksum reshuffles who
// goes first, and adding one node moves at most two nodes per wave
// boundary. The package is pure: the caller reads the view and acts on the
// [Decision].
package rollout

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/mms-io/mms/spec"
)

// Health is what a node says about the version of a machine it runs.
type Health string

// The health of a node's version.
const (
	// Pending: installed (or being installed) and not yet judged.
	Pending Health = "pending"
	// Healthy: passed its health gate.
	Healthy Health = "healthy"
	// Unhealthy: a first install that failed its health gate.
	Unhealthy Health = "unhealthy"
	// RolledBack: an upgrade that failed its gate, rolled back on the node.
	RolledBack Health = "rolled_back"
	// Failed: the version could not be installed or loaded.
	Failed Health = "failed"
)

// bad reports whether h halts a rollout of the version it is about.
func (h Health) bad() bool { return h == Unhealthy || h == RolledBack || h == Failed }

// Node is what one node reports about one spec entry.
type Node struct {
	// Identity is the node's identity.
	Identity string
	// Checksum is the version of the machine the node runs or tried last
	// (empty when it has none).
	Checksum string
	// Health is the health of that version.
	Health Health
	// HealthyAt is when that version became healthy.
	HealthyAt time.Time
	// Reason explains a bad Health.
	Reason string
	// Stale is set when the node stopped reporting for longer than the
	// stale window.
	Stale bool
}

// Policy is an entry's rollout policy, parsed.
type Policy struct {
	Waves []spec.Wave
	Pause time.Duration
	// SkipStale leaves nodes that stopped reporting out of the ranking;
	// otherwise they count as not healthy.
	SkipStale bool
	// MaxFailed is the failure budget and MinDone how many nodes must be
	// done before a share in it is judged (see spec.Rollout).
	MaxFailed spec.Budget
	MinDone   int
	// Paused starts no node that does not run the version yet.
	Paused bool
}

// NewPolicy parses an entry's rollout policy.
func NewPolicy(r *spec.Rollout) (Policy, error) {
	waves, err := spec.ParseWaves(r.Waves)
	if err != nil {
		return Policy{}, fmt.Errorf("rollout: waves: %w", err)
	}
	return Policy{Waves: waves, Pause: r.Pause.Std(), SkipStale: r.Stale == spec.StaleSkip,
		MaxFailed: r.MaxFailed, MinDone: r.MinDone, Paused: r.Paused}, nil
}

// Assign ranks identities for a machine's version and splits them into the
// policy's waves: the result's first slice is wave 1. Every caller with the
// same identities, machine and checksum gets the same waves.
func Assign(identities []string, machine, checksum string, waves []spec.Wave) [][]string {
	ranked := slices.Clone(identities)
	slices.Sort(ranked)
	ranked = slices.Compact(ranked)
	keys := make(map[string][32]byte, len(ranked))
	for _, id := range ranked {
		keys[id] = sha256.Sum256([]byte(id + "\x00" + machine + "\x00" + checksum))
	}
	slices.SortFunc(ranked, func(a, b string) int {
		ka, kb := keys[a], keys[b]
		return cmp.Or(slices.Compare(ka[:], kb[:]), cmp.Compare(a, b))
	})
	out := make([][]string, len(waves))
	start := 0
	for i, w := range waves {
		end := max(start, w.Size(len(ranked)))
		out[i] = ranked[start:end:end]
		start = end
	}
	return out
}

// HaltedPrefix starts Decision.Held when the rollout halted, so a reader of
// a node's report can tell a halt from a wait.
const HaltedPrefix = "held: rollout halted"

// Halt is where and why a rollout halted: nodes of the earlier waves
// failed with the new version past the failure budget.
type Halt struct {
	// Wave is the halting node's wave, from 1; 0 when nothing halts.
	Wave int `json:"wave"`
	// Node is the halting node's identity: the one that stopped reporting,
	// or the first failure of the wave that went past the budget.
	Node string `json:"node"`
	// Reason is the node's reason for its bad health (its health when it
	// gives none).
	Reason string `json:"reason"`
	// Failed is how many nodes had failed with the version up to the halt,
	// and MaxFailed the budget they went past, as the spec writes it; it
	// is empty when the budget is zero (the first failure halts).
	Failed    int    `json:"failed,omitempty"`
	MaxFailed string `json:"max_failed,omitempty"`
}

// String says who halted the rollout and why: "node web3: not RUNNING
// within 1m0s", "2 nodes failed, more than max_failed 1 allows; node
// web3: not RUNNING within 1m0s".
func (h Halt) String() string {
	if h.MaxFailed != "" {
		return fmt.Sprintf("%d nodes failed, more than max_failed %s allows; node %s: %s", h.Failed, h.MaxFailed, h.Node, h.Reason)
	}
	return fmt.Sprintf("node %s: %s", h.Node, h.Reason)
}

// stoppedReporting is what a node that stopped reporting has not done.
const stoppedReporting = "stopped reporting"

// Wait names the node of an earlier wave a node waits for.
type Wait struct {
	// Wave is the awaited node's wave, from 1; 0 when there is none.
	Wave int `json:"wave"`
	// Node is the awaited node's identity.
	Node string `json:"node"`
	// What it has not done yet: "pending", "not on the new version yet",
	// "not reporting yet", or "stopped reporting" when Stale.
	What string `json:"what"`
	// Stale is set when the awaited node stopped reporting: the rollout
	// waits for it to report again (or for an operator).
	Stale bool `json:"stale,omitempty"`
}

// String says whom a node waits for: "node web3 is pending", "node web3
// stopped reporting".
func (w Wait) String() string {
	if w.Stale {
		return fmt.Sprintf("node %s %s", w.Node, stoppedReporting)
	}
	return fmt.Sprintf("node %s is %s", w.Node, w.What)
}

// Decision is what a node may do about a new version now.
type Decision struct {
	// Wave is the node's wave, from 1.
	Wave int `json:"wave"`
	// Proceed is true when the node may install the version now.
	Proceed bool `json:"proceed"`
	// Halted is set when a node of an earlier wave failed with the version:
	// the node keeps what it runs until a spec pins another version.
	Halted bool `json:"halted"`
	// Held, when the node may not proceed, says why in one line, e.g.
	// "held: rollout halted at wave 1 (node web-3: not RUNNING within 1m)".
	Held string `json:"held,omitempty"`
	// Retry, when positive and the node may not proceed, is how long until
	// the decision may change by itself (the pause running out).
	Retry time.Duration `json:"-"`
	// Halt, when Halted, is where and why the rollout halted.
	Halt Halt `json:"halt,omitzero"`
	// Waiting, when the node waits for a node of an earlier wave, names
	// the first one it waits for.
	Waiting Wait `json:"waiting,omitzero"`
	// PauseUntil, when the earlier waves are healthy and the node waits
	// for the pause after them, is when the pause ends (Retry before it).
	PauseUntil time.Time `json:"pause_until,omitzero"`
	// Paused is set when the node may not start because the spec pauses
	// the rollout (rollout.paused).
	Paused bool `json:"paused,omitempty"`
}

// PausedHeld is Decision.Held of a node that a paused rollout holds.
const PausedHeld = "held: the rollout is paused (rollout.paused in the spec)"

// Progress is a rollout as every node sees it from one view: the waves
// and the decision the nodes of each wave get.
type Progress struct {
	// Waves are the identities of each wave, ranked as [Assign] ranks
	// them (nodes that stopped reporting are left out when the policy
	// skips them).
	Waves [][]string
	// Decisions[i] is the decision of every node of wave i+1.
	Decisions []Decision
	// Current is the first wave with a node that is not done with the
	// new version (it neither runs it healthy nor failed with it) or that
	// stopped reporting, from 1; 0 when there is none.
	Current int
	// Halt is the first halt in wave order, whichever wave it is in: what
	// a node ranked after the last wave would be told. Its Wave is 0 when
	// the failures are within the budget and no node stopped reporting.
	Halt Halt
	// Done is set when every node is done with the new version (healthy,
	// or failed within the budget) and none halts the rollout.
	Done bool
	// Failed are the nodes that failed with the new version, in wave
	// order: each rolled back on its own; past the budget they halt.
	Failed []string
	// Finished counts the nodes done with the new version: healthy or
	// failed.
	Finished int
	// Allowed is how many failures the budget allows with Finished nodes
	// done; Judged is false while a share is not judged yet (fewer than
	// the policy's MinDone nodes are done), and then failures do not halt.
	Allowed int
	Judged  bool

	wave map[string]int // identity → index into Waves
}

// Decision returns the decision of node identity, and false when the
// node is not in the view (or was left out as stale).
func (p *Progress) Decision(identity string) (Decision, bool) {
	i, ok := p.wave[identity]
	if !ok {
		return Decision{}, false
	}
	return p.Decisions[i], true
}

// Evaluate ranks the nodes of view for checksum of machine and computes
// once, for every wave, the decision its nodes get (see [Decide]): nodes
// in the first wave proceed at once; the nodes of a later wave proceed
// once every node of the earlier waves is done with checksum (runs it
// healthy, or failed with it within the failure budget) and the pause
// after the last of them became healthy has passed. The rollout halts at
// the first wave after which the nodes failed with checksum are more than
// the budget allows; a node of an earlier wave that stopped reporting
// holds the later waves (they wait) until it reports again, unless the
// policy skips such nodes; a paused policy lets no node start. When view
// holds an identity twice, the last one counts. It costs a sort of the
// view.
func Evaluate(p Policy, machine, checksum string, view []Node, now time.Time) Progress {
	byID := make(map[string]Node, len(view))
	ids := make([]string, 0, len(view))
	for _, n := range view {
		if n.Stale && p.SkipStale {
			continue
		}
		byID[n.Identity] = n
		ids = append(ids, n.Identity)
	}
	out := Progress{Waves: Assign(ids, machine, checksum, p.Waves), wave: make(map[string]int, len(byID))}
	out.Decisions = make([]Decision, len(out.Waves))
	// One pass in wave order: before wave i, the state is what the nodes
	// of waves 1..i-1 say, which is the decision of every node of wave i.
	var halt Halt
	var wait Wait
	var lastHealthy time.Time
	for i, members := range out.Waves {
		out.Decisions[i] = decide(p, i, halt, wait, lastHealthy, now)
		// The first failure of this wave, by rank: it halts the rollout
		// when the failures so far are past the budget.
		failure := -1
		for j, id := range members {
			out.wave[id] = i
			n := byID[id]
			bad := n.Checksum == checksum && n.Health.bad()
			switch {
			case bad:
				out.Failed = append(out.Failed, id)
				out.Finished++
				if failure < 0 {
					failure = j
				}
			case n.Stale:
				// It may report again (an agent restarting, or failing over
				// to another NATS server): the rollout waits for it rather
				// than halt for good.
				if wait.Wave == 0 {
					wait = Wait{Wave: i + 1, Node: id, What: stoppedReporting, Stale: true}
				}
			case n.Checksum != checksum || n.Health != Healthy:
				if wait.Wave == 0 {
					wait = Wait{Wave: i + 1, Node: id, What: waitingFor(n, checksum)}
				}
			default:
				out.Finished++
				if n.HealthyAt.After(lastHealthy) {
					lastHealthy = n.HealthyAt
				}
			}
			if out.Current == 0 && (n.Stale || !bad && (n.Checksum != checksum || n.Health != Healthy)) {
				out.Current = i + 1
			}
		}
		if halt.Wave > 0 {
			continue
		}
		allowed, judged := p.MaxFailed.Allowed(out.Finished, p.MinDone)
		over := judged && len(out.Failed) > allowed
		if over {
			id := out.Failed[len(out.Failed)-1] // a share judged late: the last failure
			if failure >= 0 {
				id = members[failure]
			}
			n := byID[id]
			halt = Halt{Wave: i + 1, Node: id, Reason: cmp.Or(n.Reason, string(n.Health))}
			if p.MaxFailed != (spec.Budget{}) {
				halt.Failed, halt.MaxFailed = len(out.Failed), p.MaxFailed.String()
			}
		}
	}
	out.Halt = halt
	out.Done = out.Current == 0 && halt.Wave == 0
	out.Allowed, out.Judged = p.MaxFailed.Allowed(out.Finished, p.MinDone)
	return out
}

// decide is the decision of the nodes of wave index mine, given the first
// halt, the first node waited for and the last time a node became healthy
// in the waves before it.
func decide(p Policy, mine int, halt Halt, wait Wait, lastHealthy, now time.Time) Decision {
	d := Decision{Wave: mine + 1}
	switch {
	case halt.Wave > 0:
		d.Halted, d.Halt = true, halt
		d.Held = fmt.Sprintf("%s at wave %d (%s)", HaltedPrefix, halt.Wave, halt)
	case p.Paused:
		d.Paused, d.Held = true, PausedHeld
	case wait.Wave > 0:
		d.Waiting = wait
		d.Held = fmt.Sprintf("held: waiting for wave %d (%s)", wait.Wave, wait)
	case mine > 0 && p.Pause > 0 && lastHealthy.Add(p.Pause).After(now):
		d.PauseUntil = lastHealthy.Add(p.Pause)
		d.Retry = d.PauseUntil.Sub(now)
		d.Held = fmt.Sprintf("held: wave %d is healthy; pausing %v before wave %d", mine, d.Retry.Round(time.Second), mine+1)
	default:
		d.Proceed = true
	}
	return d
}

// Decide tells the node me whether it may move to checksum of machine now,
// given what every node the entry selects reports (view; me may be missing
// from it, and is ranked all the same, even when it is stale and the
// policy skips stale nodes). It is [Evaluate]'s decision for me's wave:
// nodes in the first wave proceed at once; a node in a later wave proceeds
// once every node of the earlier waves is done with checksum (healthy, or
// failed within the budget) and the pause after the last of them became
// healthy has passed. Failures of the earlier waves past the budget halt
// the rollout; a node of an earlier wave that stopped reporting holds it
// until it reports again (unless the policy skips such nodes); a paused
// policy holds every node.
func Decide(p Policy, me, machine, checksum string, view []Node, now time.Time) Decision {
	// What me reports never changes its own decision (only the earlier
	// waves do); it only has to be ranked.
	ranked := make([]Node, 0, len(view)+1)
	for _, n := range view {
		if n.Identity != me {
			ranked = append(ranked, n)
		}
	}
	ranked = append(ranked, Node{Identity: me})
	pr := Evaluate(p, machine, checksum, ranked, now)
	d, _ := pr.Decision(me)
	return d
}

// waitingFor says what a node of an earlier wave has not done yet.
func waitingFor(n Node, checksum string) string {
	switch {
	case n.Identity == "":
		return "not reporting yet"
	case n.Checksum != checksum:
		return "not on the new version yet"
	default:
		return string(n.Health)
	}
}
