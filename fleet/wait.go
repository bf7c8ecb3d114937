package fleet

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// WaitState is where one node is with the spec `put --wait` follows.
type WaitState string

// The states of a node `put --wait` waits for.
const (
	// WaitPending: not there yet.
	WaitPending WaitState = "pending"
	// WaitApplied: runs the spec, every entry fine.
	WaitApplied WaitState = "applied"
	// WaitFailed: rejected the spec, failed an entry or stopped.
	WaitFailed WaitState = "failed"
	// WaitTolerated: failed only the new version of rollout entries,
	// within their failure budgets (rollout.max_failed): the node rolled
	// back on its own and the rollout goes on.
	WaitTolerated WaitState = "tolerated"
	// WaitSuperseded: runs a newer spec already.
	WaitSuperseded WaitState = "superseded"
)

// WaitNode is one node a wait counts.
type WaitNode struct {
	Key      string    `json:"key"`
	Identity string    `json:"identity"`
	State    WaitState `json:"state"`
	// Detail says why it failed, or where it is.
	Detail string `json:"detail,omitempty"`
}

// Wait judges, from a Tracker that follows the status bucket, whether
// every node applied a spec just written. The nodes it counts are those
// whose documents the tracker held when the wait started, except agents
// that had stopped or gone stale (they count again once they write a new
// document), and every agent that starts reporting later; a deleted
// document drops its node.
type Wait struct {
	t       *Tracker
	next    *packer.Opened
	label   string
	skip    map[string]uint64 // key → revision not waited for
	skipped []string          // identities of the agents stale at the start
}

// maxPendingNamed caps how many pending nodes a progress line names.
const maxPendingNamed = 5

// NewWait starts waiting for next at start, from the documents t holds.
func NewWait(t *Tracker, next *packer.Opened, start time.Time) *Wait {
	w := &Wait{t: t, next: next, label: WaitLabel(next), skip: map[string]uint64{}}
	for _, r := range t.records() {
		d := r.doc
		switch {
		case d == nil:
		case !d.StoppedAt.IsZero():
			w.skip[r.key] = r.revision
		case d.Stale(start, 0):
			w.skip[r.key] = r.revision
			w.skipped = append(w.skipped, d.Identity)
		}
	}
	return w
}

// Label names the spec waited for (see [WaitLabel]).
func (w *Wait) Label() string { return w.label }

// WaitLabel names a spec waited for: "serial 17", or "v1 spec
// 0123456789ab".
func WaitLabel(next *packer.Opened) string {
	if next.Format == packer.FormatV1 {
		return "v1 spec " + short(next.Digest)
	}
	return fmt.Sprintf("serial %d", next.Spec.Serial)
}

// Skipped returns the identities of the agents that were stale when the
// wait started, sorted (each counts again once it writes a document).
func (w *Wait) Skipped() []string { return w.skipped }

// Verdict is where a wait stands.
type Verdict struct {
	// Label names the spec waited for.
	Label string `json:"label"`
	// Nodes are the nodes counted, by identity.
	Nodes []WaitNode `json:"nodes"`
	// Counts count them by state.
	Counts map[WaitState]int `json:"counts"`
	// Rollouts are the rollouts of the spec waited for.
	Rollouts []Rollout `json:"rollouts"`
	// Summary says in one line how many applied, and the first failure:
	// "serial 3: 1/2 applied, 1 failed: web2: web failed: install: sha256
	// mismatch".
	Summary string `json:"summary"`
	// Progress is Summary, then where each rollout is and who is pending:
	// "serial 12: 3/10 applied; web wave 2 of 3 pausing 14s; pending:
	// web4, web5".
	Progress string `json:"progress"`
}

// Applied is how many nodes run the spec (or a newer one).
func (v *Verdict) Applied() int { return v.Counts[WaitApplied] + v.Counts[WaitSuperseded] }

// Done reports whether the wait is over: no node pending (at least one
// node counted).
func (v *Verdict) Done() bool { return len(v.Nodes) > 0 && v.Counts[WaitPending] == 0 }

// OK reports whether every node counted applied the spec (or a newer
// one), or failed only within a rollout's failure budget.
func (v *Verdict) OK() bool { return v.Done() && v.Counts[WaitFailed] == 0 }

// Verdict judges every counted node at now.
func (w *Wait) Verdict(now time.Time) Verdict {
	v := Verdict{Label: w.label, Nodes: []WaitNode{}, Counts: map[WaitState]int{}}
	v.Rollouts = w.t.rolloutsOf(w.next.Spec.Machines, now)
	var pending []string
	for _, r := range w.t.records() {
		if r.doc == nil {
			continue // unreadable: `mms status` reports it
		}
		if rev, ok := w.skip[r.key]; ok && rev == r.revision {
			continue
		}
		state, detail := judge(r.doc, w.next)
		if state == WaitFailed && tolerated(r.doc, v.Rollouts) {
			state = WaitTolerated
		}
		v.Nodes = append(v.Nodes, WaitNode{Key: r.key, Identity: r.doc.Identity, State: state, Detail: detail})
		v.Counts[state]++
		if state == WaitPending {
			pending = append(pending, r.doc.Identity)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d applied", w.label, v.Applied(), len(v.Nodes))
	if i := slices.IndexFunc(v.Nodes, func(n WaitNode) bool { return n.State == WaitFailed }); i >= 0 {
		fmt.Fprintf(&b, ", %d failed: %s: %s", v.Counts[WaitFailed], v.Nodes[i].Identity, v.Nodes[i].Detail)
	}
	if n := v.Counts[WaitTolerated]; n > 0 {
		fmt.Fprintf(&b, ", %d failed within the failure budget", n)
	}
	v.Summary = b.String()
	for _, r := range v.Rollouts {
		if r.Problem == "" && !r.Done || r.Budget != nil || len(r.Held) > 0 {
			b.WriteString("; " + r.Summary(now))
		}
	}
	if len(pending) > 0 {
		fmt.Fprintf(&b, "; pending: %s", strings.Join(capList(pending, maxPendingNamed), ", "))
	}
	v.Progress = b.String()
	return v
}

// tolerated reports whether every failed entry of d is the new version
// of a rollout that d's node failed within its failure budget (the
// rollout has a budget and did not halt).
func tolerated(d *nodestatus.Document, rollouts []Rollout) bool {
	failed := d.Failed()
	for _, e := range failed {
		i := slices.IndexFunc(rollouts, func(r Rollout) bool { return r.Machine == e.Name })
		if i < 0 {
			return false
		}
		r := rollouts[i]
		if r.Budget == nil || r.Halted || !slices.Contains(r.Failed, d.Identity) {
			return false
		}
	}
	return len(failed) > 0
}

// judge says where the agent of d is with next.
func judge(d *nodestatus.Document, next *packer.Opened) (WaitState, string) {
	if a := d.Applied; a != nil && a.Digest == next.Digest {
		if failed := failedProblems(d); failed != "" {
			return WaitFailed, failed
		}
		var waiting []string // a rollout wave, a health gate
		for _, e := range d.Entries {
			if w := e.Waiting(); w != "" {
				waiting = append(waiting, w)
			}
		}
		if len(waiting) > 0 {
			return WaitPending, strings.Join(waiting, ", ")
		}
		return WaitApplied, ""
	}
	if s := d.Seen; s.Refused() && s.Digest == next.Digest {
		return WaitFailed, s.Problem()
	}
	if !d.StoppedAt.IsZero() {
		return WaitFailed, "the agent stopped"
	}
	if a := d.Applied; a != nil && next.Format == packer.FormatV2 && a.Format == packer.FormatV2.String() && a.Serial > next.Spec.Serial {
		return WaitSuperseded, "runs " + a.Label() + ", a newer spec"
	}
	var where []string
	for _, e := range d.Entries {
		if e.Download != nil {
			where = append(where, e.Name+" "+DownloadLine(e.Download))
		}
	}
	switch {
	case len(where) > 0:
	case d.Applied != nil:
		where = append(where, "runs "+d.Applied.Label())
	case d.Seen != nil:
		where = append(where, "never applied a spec")
	default:
		where = append(where, "its manager has not reported yet")
	}
	return WaitPending, strings.Join(where, ", ")
}
