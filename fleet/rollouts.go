package fleet

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// NodeState is where a node is in a rollout.
type NodeState string

// The states of a node in a rollout.
const (
	// StateHealthy: runs the new version, healthy.
	StateHealthy NodeState = "healthy"
	// StatePending: runs the new version, its health gate not passed yet.
	StatePending NodeState = "pending"
	// StateHeld: the rollout holds it on the version it runs (its wave has
	// not started, or the rollout halted).
	StateHeld NodeState = "held"
	// StateRolledBack: the new version failed its health gate and was
	// rolled back.
	StateRolledBack NodeState = "rolled_back"
	// StateUnhealthy: a first install of the new version failed its gate.
	StateUnhealthy NodeState = "unhealthy"
	// StateFailed: the new version could not be installed or loaded.
	StateFailed NodeState = "failed"
	// StateStale: the agent stopped reporting.
	StateStale NodeState = "stale"
	// StateOld: the node has not applied the spec yet (it runs an older
	// one).
	StateOld NodeState = "old"
)

// Version is a version of a machine: its name, as the nodes that ran it
// reported it ("" when none did), and its archive checksum.
type Version struct {
	Name     string `json:"name,omitempty"`
	Checksum string `json:"checksum,omitempty"`
}

// String names the version: "2.0.0 (3f2a8c1b2d3e)", the name or the
// checksum alone when that is all there is.
func (v Version) String() string {
	switch {
	case v.Name != "" && v.Checksum != "":
		return v.Name + " (" + short(v.Checksum) + ")"
	case v.Name != "":
		return v.Name
	}
	return short(v.Checksum)
}

// Rollout is one entry's rollout as every agent computes it.
type Rollout struct {
	// Machine is the entry's name; Checksum the version it rolls out.
	Machine  string `json:"machine"`
	Checksum string `json:"checksum"`
	// New is the version rolled out, Old the versions the nodes ran
	// before it, by name then checksum: those they run now, and those a
	// Tracker that followed the rollout saw them run.
	New Version   `json:"new"`
	Old []Version `json:"old"`
	// NewVersion and OldVersions are their names ("" / left out when
	// unknown; OldVersions names an unnamed version by its checksum).
	NewVersion  string   `json:"new_version,omitempty"`
	OldVersions []string `json:"old_versions,omitempty"`
	// Policy is the entry's rollout policy; Problem says why it does not
	// parse (then there are no waves).
	Policy  spec.Rollout `json:"policy"`
	Problem string       `json:"problem,omitempty"`
	// Waves are the waves with their nodes, as every agent ranks them.
	Waves []Wave `json:"waves"`
	// Current is the first wave with a node that does not run the new
	// version healthy, from 1; 0 when every wave does.
	Current int `json:"current_wave"`
	// Done: every node runs the new version healthy.
	Done bool `json:"done"`
	// Halted, HaltedAt and Reason: a node failed with the new version or
	// stopped reporting, in wave HaltedAt, and why ("node web3: not
	// RUNNING within 10s"); Halt is the same, structured.
	Halted   bool          `json:"halted"`
	HaltedAt int           `json:"halted_at,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Halt     *rollout.Halt `json:"halt,omitempty"`
	// PauseUntil, when the waves before Current are healthy and the pause
	// after them runs, is when wave Current may start.
	PauseUntil time.Time `json:"pause_until,omitzero"`
	// SkippedStale are the nodes left out of the waves because they
	// stopped reporting and the policy skips such nodes.
	SkippedStale []string `json:"skipped_stale,omitempty"`
	// Held are the nodes the entry's hold holds, sorted: each keeps what
	// it runs and is in no wave.
	Held []string `json:"held,omitempty"`
	// Paused is set when the policy pauses the rollout (rollout.paused):
	// no node starts the new version; nodes under way finish.
	Paused bool `json:"paused,omitempty"`
	// Failed are the nodes that failed with the new version (each rolled
	// back on its own, or stopped a first install), in wave order.
	Failed []string `json:"failed,omitempty"`
	// Budget is the failure budget and how much of it is used; nil when
	// the policy has none (the first failure halts).
	Budget *Budget `json:"budget,omitempty"`
}

// Budget is a rollout's failure budget (rollout.max_failed) and how much
// of it the nodes used.
type Budget struct {
	// MaxFailed is the budget as the spec writes it ("1", "10%");
	// MinDone how many nodes must be done before a share is judged.
	MaxFailed string `json:"max_failed"`
	MinDone   int    `json:"min_done,omitempty"`
	// Failed counts the nodes that failed with the new version, Done
	// those done with it (healthy or failed).
	Failed int `json:"failed"`
	Done   int `json:"done"`
	// Allowed is how many failures the budget allows with Done nodes
	// done; Judged is false while a share waits for MinDone nodes (then
	// failures do not halt).
	Allowed int  `json:"allowed"`
	Judged  bool `json:"judged"`
}

// String says how much of the budget is used: "max_failed 1: 1 of 1
// used", "max_failed 20%: 1 of 2 used (10 done)", "max_failed 20%: 1
// failed, judged from 5 done (3 so far)".
func (b Budget) String() string {
	switch {
	case !b.Judged:
		return fmt.Sprintf("max_failed %s: %d failed, judged from %d done (%d so far)", b.MaxFailed, b.Failed, b.MinDone, b.Done)
	case strings.HasSuffix(b.MaxFailed, "%"):
		return fmt.Sprintf("max_failed %s: %d of %d used (%d done)", b.MaxFailed, b.Failed, b.Allowed, b.Done)
	}
	return fmt.Sprintf("max_failed %s: %d of %d used", b.MaxFailed, b.Failed, b.Allowed)
}

// Summary says where the rollout is in one line, as `mms status` and the
// progress of `mms put --wait` show it: "web wave 2 of 3 pausing 14s",
// "web paused at wave 2 of 3", "web halted at wave 1", "web done", then
// the budget used and the nodes held by the entry's hold, if any.
func (r *Rollout) Summary(now time.Time) string {
	var b strings.Builder
	b.WriteString(r.Machine)
	switch {
	case r.Problem != "":
		b.WriteString(" has a rollout policy that does not parse")
	case r.Halted:
		fmt.Fprintf(&b, " halted at wave %d", r.HaltedAt)
	case r.Done:
		b.WriteString(" done")
	case r.Paused:
		fmt.Fprintf(&b, " paused at wave %d of %d", r.Current, len(r.Waves))
	default:
		fmt.Fprintf(&b, " wave %d of %d", r.Current, len(r.Waves))
		if p := r.Pause(now); p > 0 {
			fmt.Fprintf(&b, " pausing %v", p.Round(time.Second))
		} else if s := r.StaleWait(); s != "" {
			fmt.Fprintf(&b, " (%s)", s)
		}
	}
	if r.Budget != nil {
		b.WriteString(", " + r.Budget.String())
	}
	if n := len(r.Held); n > 0 {
		fmt.Fprintf(&b, ", %d held by its hold", n)
	}
	return b.String()
}

// Pause returns how long until wave Current may start, at now (0 when no
// pause runs).
func (r *Rollout) Pause(now time.Time) time.Duration {
	if r.PauseUntil.IsZero() {
		return 0
	}
	return max(r.PauseUntil.Sub(now), 0)
}

// StaleWait names the node that stopped reporting the rollout waits for
// ("node web3 stopped reporting"), or "" when it waits for none.
func (r *Rollout) StaleWait() string {
	for _, w := range r.Waves {
		if w.Decision.Waiting.Stale {
			return w.Decision.Waiting.String()
		}
	}
	return ""
}

// Wave is one wave of a rollout.
type Wave struct {
	// Wave is its number, from 1; Size the policy's size of it ("1",
	// "50%").
	Wave int    `json:"wave"`
	Size string `json:"size"`
	// Nodes are its nodes, in rank order.
	Nodes []RolloutNode `json:"nodes"`
	// Decision is what every node of the wave may do now: proceed, wait
	// for a node of an earlier wave, pause, or nothing (halted).
	Decision rollout.Decision `json:"decision"`
}

// RolloutNode is one node of a wave.
type RolloutNode struct {
	Identity string    `json:"identity"`
	State    NodeState `json:"state"`
	// Version is the version the node runs.
	Version string `json:"version,omitempty"`
	// Detail says why it is held, how it failed, since when it is stale.
	Detail string `json:"detail,omitempty"`
}

// Rollouts returns the rollout of every entry of the live spec with a
// rollout policy, in spec order, at now; none without a live spec.
func (t *Tracker) Rollouts(now time.Time) []Rollout {
	if t.spec.State != SpecLive {
		return nil
	}
	return t.rolloutsOf(t.spec.Opened.Spec.Machines, now)
}

// rolloutsOf returns the rollouts of the entries of machines that have a
// rollout policy.
func (t *Tracker) rolloutsOf(machines []spec.Machine, now time.Time) []Rollout {
	var docs []*nodestatus.Document
	var out []Rollout
	for _, m := range machines {
		if m.Rollout == nil {
			continue
		}
		if docs == nil {
			docs = t.documents()
		}
		out = append(out, t.rolloutOf(m, docs, now))
	}
	return out
}

// reported is what one node reports about a rollout's entry.
type reported struct {
	node  rollout.Node
	entry nodestatus.Entry
	doc   *nodestatus.Document
}

// rolloutOf builds entry m's rollout from the documents, with the waves
// and decisions of rollout.Evaluate.
func (t *Tracker) rolloutOf(m spec.Machine, docs []*nodestatus.Document, now time.Time) Rollout {
	r := Rollout{Machine: m.Name, Checksum: m.Checksum, Policy: *m.Rollout, Old: []Version{}, Waves: []Wave{}}
	r.New = Version{Name: t.Version(m.Name, m.Checksum), Checksum: m.Checksum}
	r.NewVersion = r.New.Name
	policy, err := rollout.NewPolicy(m.Rollout)
	if err != nil {
		r.Problem = err.Error()
		return r
	}
	r.Paused = policy.Paused
	byID := make(map[string]reported, len(docs))
	view := make([]rollout.Node, 0, len(docs))
	for _, d := range docs {
		n, ok := nodestatus.NodeOf(d, m.Name, now)
		if !ok {
			if e, _ := d.Entry(m.Name); e.HeldByHold() {
				r.Held = append(r.Held, d.Identity)
			}
			continue
		}
		if n.Stale && policy.SkipStale {
			r.SkippedStale = append(r.SkippedStale, n.Identity)
			continue
		}
		e, _ := d.Entry(m.Name)
		byID[n.Identity] = reported{node: n, doc: d, entry: e}
		view = append(view, n)
	}
	p := rollout.Evaluate(policy, m.Name, m.Checksum, view, now)
	for i, members := range p.Waves {
		w := Wave{Wave: i + 1, Size: m.Rollout.Waves[i], Nodes: make([]RolloutNode, 0, len(members)), Decision: p.Decisions[i]}
		for _, id := range members {
			rep := byID[id]
			w.Nodes = append(w.Nodes, nodeInRollout(rep, m.Checksum, w.Decision, now))
			r.Old = addOld(r.Old, t.oldVersion(m, rep))
		}
		r.Waves = append(r.Waves, w)
	}
	slices.Sort(r.Held)
	r.Current, r.Done, r.Failed = p.Current, p.Done, p.Failed
	if policy.MaxFailed != (spec.Budget{}) {
		r.Budget = &Budget{MaxFailed: policy.MaxFailed.String(), MinDone: policy.MinDone, Failed: len(p.Failed), Done: p.Finished,
			Allowed: p.Allowed, Judged: p.Judged}
	}
	if h := p.Halt; h.Wave > 0 {
		r.Halted, r.HaltedAt, r.Reason, r.Halt = true, h.Wave, h.String(), &h
	}
	if r.Current > 0 && !r.Halted {
		r.PauseUntil = p.Decisions[r.Current-1].PauseUntil
	}
	key := rolloutKey{m.Name, strings.ToLower(m.Checksum)}
	for _, v := range t.olds[key] {
		r.Old = addOld(r.Old, v)
	}
	slices.SortFunc(r.Old, func(a, b Version) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Checksum, b.Checksum))
	})
	t.olds[key] = slices.Clone(r.Old)
	for _, v := range r.Old {
		r.OldVersions = append(r.OldVersions, cmp.Or(v.Name, short(v.Checksum)))
	}
	return r
}

// oldVersion is the version rep runs when it is not m's new one, else the
// zero Version.
func (t *Tracker) oldVersion(m spec.Machine, rep reported) Version {
	e := rep.entry
	installed := strings.ToLower(e.Installed)
	if installed == strings.ToLower(m.Checksum) {
		return Version{}
	}
	return Version{Name: cmp.Or(e.Version, t.Version(m.Name, installed)), Checksum: installed}
}

// addOld adds v to olds unless it is there already (or zero): one
// version per checksum, and a version known by name only counts as the
// same version as one with that name and a checksum.
func addOld(olds []Version, v Version) []Version {
	if v == (Version{}) {
		return olds
	}
	for i, o := range olds {
		switch {
		case v.Checksum != "" && o.Checksum == v.Checksum:
			return olds
		case v.Checksum == "" && v.Name == o.Name:
			return olds
		case o.Checksum == "" && o.Name == v.Name:
			olds[i] = v
			return olds
		}
	}
	return append(olds, v)
}

// nodeInRollout is where one node of a wave is, given its wave's
// decision: its own report says whether it runs the new version and how
// that went or whether it is held; why it is held is the decision the
// agents' rule gives its wave now.
func nodeInRollout(rep reported, checksum string, d rollout.Decision, now time.Time) RolloutNode {
	n, e := rep.node, rep.entry
	out := RolloutNode{Identity: n.Identity, Version: e.Version}
	switch {
	case n.Stale:
		out.State = StateStale
		if rep.doc != nil && !rep.doc.StoppedAt.IsZero() {
			out.Detail = "the agent stopped " + Age(now.Sub(rep.doc.StoppedAt)) + " ago"
		} else if rep.doc != nil {
			out.Detail = "no update for " + Age(now.Sub(rep.doc.UpdatedAt))
		}
	case manager.EntryOutcome(e.Outcome) == manager.EntryHeld:
		out.State, out.Detail = StateHeld, strings.TrimPrefix(e.Reason, "held: ")
		if !d.Proceed {
			out.Detail = strings.TrimPrefix(d.Held, "held: ")
		}
	case n.Checksum == checksum && n.Health != "":
		out.State = NodeState(n.Health)
		if n.Health != rollout.Healthy && n.Health != rollout.Pending {
			out.Detail = n.Reason
		}
	default:
		out.State = StateOld
	}
	return out
}
