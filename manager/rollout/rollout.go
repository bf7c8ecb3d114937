// Package rollout decides, on each node and with no control server, when
// that node may move to a new version of a machine: the matching nodes
// upgrade in waves, a wave starts only when every node of the earlier
// waves reports the new version healthy and the pause has passed, and a
// failure in an earlier wave halts the rollout for everyone after it.
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
}

// NewPolicy parses an entry's rollout policy.
func NewPolicy(r *spec.Rollout) (Policy, error) {
	waves, err := spec.ParseWaves(r.Waves)
	if err != nil {
		return Policy{}, fmt.Errorf("rollout: waves: %w", err)
	}
	return Policy{Waves: waves, Pause: r.Pause.Std(), SkipStale: r.Stale == spec.StaleSkip}, nil
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

// Decision is what a node may do about a new version now.
type Decision struct {
	// Wave is the node's wave, from 1.
	Wave int
	// Proceed is true when the node may install the version now.
	Proceed bool
	// Halted is set when a node of an earlier wave failed with the version:
	// the node keeps what it runs until a spec pins another version.
	Halted bool
	// Held, when the node may not proceed, says why in one line, e.g.
	// "held: rollout halted at wave 1 (node web-3: not RUNNING within 1m)".
	Held string
	// Retry, when positive and the node may not proceed, is how long until
	// the decision may change by itself (the pause running out).
	Retry time.Duration
}

// Decide tells the node me whether it may move to checksum of machine now,
// given what every node the entry selects reports (view; me may be missing
// from it, and is ranked all the same). Nodes in the first wave proceed at
// once; a node in a later wave proceeds once every node of the earlier
// waves runs checksum healthy and the pause after the last of them became
// healthy has passed. A node of an earlier wave that failed with checksum
// halts the rollout; one that stopped reporting holds it until it reports
// again (unless the policy skips such nodes).
func Decide(p Policy, me, machine, checksum string, view []Node, now time.Time) Decision {
	byID := make(map[string]Node, len(view))
	ids := []string{me}
	for _, n := range view {
		if n.Stale && p.SkipStale && n.Identity != me {
			continue
		}
		byID[n.Identity] = n
		ids = append(ids, n.Identity)
	}
	waves := Assign(ids, machine, checksum, p.Waves)
	mine := 0
	for i, w := range waves {
		if slices.Contains(w, me) {
			mine = i
			break
		}
	}
	d := Decision{Wave: mine + 1}
	var lastHealthy time.Time
	for i := range mine {
		for _, id := range waves[i] {
			n := byID[id]
			switch {
			case n.Checksum == checksum && n.Health.bad():
				d.Halted = true
				d.Held = fmt.Sprintf("%s at wave %d (node %s: %s)", HaltedPrefix, i+1, id, cmp.Or(n.Reason, string(n.Health)))
				return d
			case n.Stale:
				// It may report again (an agent restarting, or failing over
				// to another NATS server): the rollout waits for it, and
				// looks again, rather than halt for good.
				if d.Held == "" {
					d.Held = fmt.Sprintf("held: waiting for wave %d (node %s stopped reporting)", i+1, id)
				}
			case n.Checksum != checksum || n.Health != Healthy:
				if d.Held == "" {
					d.Held = fmt.Sprintf("held: waiting for wave %d (node %s is %s)", i+1, id, waitingFor(n, checksum))
				}
			default:
				if n.HealthyAt.After(lastHealthy) {
					lastHealthy = n.HealthyAt
				}
			}
		}
	}
	if d.Held != "" {
		return d
	}
	if mine > 0 && p.Pause > 0 {
		if rest := lastHealthy.Add(p.Pause).Sub(now); rest > 0 {
			d.Held = fmt.Sprintf("held: wave %d is healthy; pausing %v before wave %d", mine, rest.Round(time.Second), mine+1)
			d.Retry = rest
			return d
		}
	}
	d.Proceed = true
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
