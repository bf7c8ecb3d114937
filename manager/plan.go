package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/natsask"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// Plans: `mms plan SPEC` asks every agent what it would do with a signed
// spec, without putting it. The request is the envelope itself, published
// on PlanSubject with a reply subject (and, to ask only some nodes, a
// regular expression of their identity in the PlanIdentityHeader header);
// every node that matches answers once with a [PlanReply]. A node answers
// with [Reconciler.Plan]: the steps of a real pass up to, not including,
// download and install, on its own facts, files and commands, its replay
// ledger and what the fleet reports for rollouts. Nothing on the node
// changes. The request carries no more authority than the spec's
// signatures: NATS permissions decide who may ask (`mms nats-config` lets
// the operator publish on the subject and nodes only subscribe and
// answer).
const (
	// PlanSubject is the subject plan requests are published on.
	PlanSubject = "mms.spec.plan"
	// PlanIdentityHeader, when set on a request, is a regular expression
	// (Go syntax) the answering nodes' identities match.
	PlanIdentityHeader = "Mms-Identity"
	// MaxPlanReply caps a reply's size; a larger one is dropped.
	MaxPlanReply = 1 << 20
)

// PlanAction is what a node would do with one entry of a spec.
type PlanAction string

// The actions of a plan.
const (
	// PlanInstall: the node would download and install the entry.
	PlanInstall PlanAction = "install"
	// PlanUpgrade: the node runs another version and would move to the
	// entry's (in its rollout wave, when the entry has a policy).
	PlanUpgrade PlanAction = "upgrade"
	// PlanNoChange: the node runs the entry's version already.
	PlanNoChange PlanAction = "no_change"
	// PlanPurge: the node would remove a machine it installed that the
	// spec no longer selects.
	PlanPurge PlanAction = "purge"
	// PlanSkip: the entry's matcher does not select the node.
	PlanSkip PlanAction = "skip"
	// PlanHold: the entry's hold selects the node: it keeps what it runs.
	PlanHold PlanAction = "hold"
	// PlanRefuse: the node would fail the entry (invalid, a matcher it
	// cannot evaluate, a version that failed there before), or refuse the
	// whole spec (PlanReply.Refused).
	PlanRefuse PlanAction = "refuse"
)

// PlanEntry is what a node would do with one entry.
type PlanEntry struct {
	// Name is the entry's (or purged machine's) name.
	Name   string     `json:"name"`
	Action PlanAction `json:"action"`
	// Checksum is the version the entry pins; Installed the one the node
	// has (empty when none), and InstalledVersion its name, when the node
	// runs it.
	Checksum         string `json:"checksum,omitempty"`
	Installed        string `json:"installed,omitempty"`
	InstalledVersion string `json:"installed_version,omitempty"`
	// Wave is the node's wave in the entry's rollout, from 1 (0 without a
	// rollout policy); Held, when the rollout would not let it start yet,
	// says why (waiting for an earlier wave, paused, halted).
	Wave int    `json:"wave,omitempty"`
	Held string `json:"held,omitempty"`
	// Reason says why a skip, a hold, a refusal or a purge.
	Reason string `json:"reason,omitempty"`
}

// PlanReply is a node's answer to a plan request.
type PlanReply struct {
	// Identity is the node that answered.
	Identity string `json:"identity"`
	// Serial, Digest and Format name the spec planned (what it claims
	// when refused).
	Serial uint64 `json:"serial"`
	Digest string `json:"digest,omitempty"`
	Format string `json:"format,omitempty"`
	// Refused, when set, is why the node would not act on the spec at all
	// (a Rejection: untrusted, ignored-older, expired, ...), and Reason
	// says more; then Entries is empty.
	Refused Rejection `json:"refused,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// Entries has one entry per spec entry, in spec order, then one per
	// machine the node would purge.
	Entries []PlanEntry `json:"entries"`
}

// Refuses reports whether the node would refuse the spec or fail one of
// its entries.
func (p *PlanReply) Refuses() bool {
	if p.Refused != "" {
		return true
	}
	for _, e := range p.Entries {
		if e.Action == PlanRefuse {
			return true
		}
	}
	return false
}

// dryLedger is a replay ledger that reads the node's and records nothing:
// a plan opens a spec the way a pass would without accepting it.
type dryLedger struct{ packer.Ledger }

// Accept records nothing.
func (dryLedger) Accept(packer.Record) error { return nil }

// Plan says what a pass over envelope would do on this node, without
// doing it: the same steps as Reconcile — open (signatures, threshold,
// serial against the replay ledger, expiry), validate and compile every
// entry, evaluate matchers and holds on this node, find what would be
// purged, and decide rollout waves from what the fleet reports — up to,
// not including, download and install. Nothing is recorded or changed.
func (r *Reconciler) Plan(ctx context.Context, envelope []byte) PlanReply {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := PlanReply{Identity: r.cfg.Identity, Entries: []PlanEntry{}}
	opts := r.openOptions()
	opts.Ledger = dryLedger{r.ledger}
	opened, err := packer.Open(envelope, opts)
	if err != nil {
		rep.Refused, rep.Reason = RejectionOf(err), err.Error()
		if insp, ierr := packer.Inspect(envelope); ierr == nil {
			rep.Serial, rep.Format, rep.Digest = insp.Spec.Serial, insp.Format.String(), insp.Digest
		}
		return rep
	}
	rep.Serial, rep.Digest, rep.Format = opened.Spec.Serial, opened.Digest, opened.Format.String()
	p := r.plan
	if p == nil || p.digest != opened.Digest || p.format != opened.Format {
		if p, err = r.buildPlan(opened, new(spec.MatcherCache)); err != nil {
			rep.Refused, rep.Reason = RejectionOf(err), fmt.Sprintf("spec serial %d: %v", opened.Spec.Serial, err)
			return rep
		}
	}
	installed, err := r.cfg.Installer.Installed()
	if err != nil {
		rep.Refused, rep.Reason = RejectError, fmt.Sprintf("read install records: %v", err)
		return rep
	}
	ev := r.evaluateAll(ctx, p, copyNotes{records: installed})
	var purges []MachineResult
	if r.cfg.PurgeUnknown && !opened.Stale && !ev.holdPurge {
		purges = toPurge(installed, ev.keep, ev.inSpec)
	}
	r.noteHeld(ev.results, installed)
	var fleetWait bool
	r.holdForRollout(ctx, p, ev.results, installed, &fleetWait)
	for i, res := range ev.results {
		rep.Entries = append(rep.Entries, r.planEntry(p.entries[i], res, installed))
	}
	for _, res := range purges {
		rep.Entries = append(rep.Entries, PlanEntry{Name: res.Name, Action: PlanPurge, Installed: installed[res.Name].Checksum,
			InstalledVersion: r.runningVersion(res.Name), Reason: res.Reason})
	}
	return rep
}

// planEntry turns the result of evaluating (and holding) entry e into
// what the node would do with it.
func (r *Reconciler) planEntry(e planEntry, res MachineResult, installed map[string]Record) PlanEntry {
	out := PlanEntry{Name: res.Name, Checksum: strings.ToLower(e.machine.Checksum), Wave: res.Wave, Reason: res.Reason}
	if rec, ok := installed[res.Name]; ok {
		out.Installed, out.InstalledVersion = strings.ToLower(rec.Checksum), r.runningVersion(res.Name)
	}
	switch res.Outcome {
	case EntrySkipped:
		out.Action = PlanSkip
		return out
	case EntryFailed, EntryRolledBack, EntryUnhealthy:
		out.Action = PlanRefuse
		return out
	case EntryHeld:
		if res.Hold != "" {
			out.Action = PlanHold
			return out
		}
		out.Held, out.Reason = res.Reason, ""
	}
	switch {
	case out.Installed == "":
		out.Action = PlanInstall
	case out.Installed == out.Checksum:
		out.Action, out.Wave, out.Held = PlanNoChange, 0, ""
	default:
		out.Action = PlanUpgrade
	}
	return out
}

// runningVersion is the version of machine name the host runs, or "".
func (r *Reconciler) runningVersion(name string) string {
	if st, ok := r.cfg.Host.MachineState(name); ok {
		return st.Version
	}
	return ""
}

// ParsePlanReply decodes a node's answer to a plan request: a JSON object
// of at most [MaxPlanReply] bytes with an identity, and entries with
// known actions. Unknown fields are ignored, so newer nodes may add some.
func ParsePlanReply(data []byte) (PlanReply, error) {
	var p PlanReply
	if len(data) > MaxPlanReply {
		return p, fmt.Errorf("plan reply is %d bytes, over the %d limit", len(data), MaxPlanReply)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("plan reply: %w", err)
	}
	if p.Identity == "" {
		return p, errors.New("plan reply: no identity")
	}
	for i, e := range p.Entries {
		switch e.Action {
		case PlanInstall, PlanUpgrade, PlanNoChange, PlanPurge, PlanSkip, PlanHold, PlanRefuse:
		default:
			return p, fmt.Errorf("plan reply: entry %d (%q): unknown action %q", i, e.Name, e.Action)
		}
	}
	if p.Entries == nil {
		p.Entries = []PlanEntry{}
	}
	return p, nil
}

// RequestPlan asks the nodes whose identity matches identity (a regular
// expression; empty: every node) what they would do with envelope, and
// returns the replies that arrive within wait, in arrival order; it
// returns early once every identity in expect has answered. Replies that
// do not parse, or whose identity does not match, are dropped.
func RequestPlan(ctx context.Context, nc *nats.Conn, envelope []byte, identity string, wait time.Duration, expect []string) ([]PlanReply, error) {
	re, err := regexp.Compile(identity)
	if err != nil {
		return nil, fmt.Errorf("plan request: identity: %w", err)
	}
	msg := &nats.Msg{Subject: PlanSubject, Data: envelope, Header: nats.Header{}}
	if identity != "" {
		msg.Header.Set(PlanIdentityHeader, identity)
	}
	replies, err := natsask.Gather(ctx, nc, msg, wait, expect, func(data []byte) (string, bool) {
		p, err := ParsePlanReply(data)
		return p.Identity, err == nil && re.MatchString(p.Identity)
	})
	if err != nil {
		return nil, fmt.Errorf("plan request: %w", err)
	}
	out := make([]PlanReply, len(replies))
	for i, data := range replies {
		out[i], _ = ParsePlanReply(data) // Gather kept only replies that parse
	}
	return out, nil
}

// ParsePlanIdentity returns the identity pattern of a plan request's
// header value (nil: every node).
func ParsePlanIdentity(value string) (*regexp.Regexp, error) {
	if value == "" {
		return nil, nil
	}
	re, err := regexp.Compile(value)
	if err != nil {
		return nil, fmt.Errorf("plan request: identity: %w", err)
	}
	return re, nil
}
