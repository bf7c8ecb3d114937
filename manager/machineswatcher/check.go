package machineswatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/watchers"
)

// State is the type-specific part of the machines watcher's state event:
// Choria's fields (machines, previous_outcome, previous_run_time) plus the
// spec and per-machine results.
type State struct {
	// Machines names the spec's machines installed and running on this
	// node (Choria listed the desired names instead). After a rejected
	// spec it is the list of the last accepted one, which keeps running.
	Machines []string `json:"machines"`
	// PreviousOutcome is "updated" (something changed), "unchanged" or
	// "error" (the spec was rejected or an entry failed).
	PreviousOutcome string `json:"previous_outcome"`
	// PreviousRunTime is how long the check took, in nanoseconds.
	PreviousRunTime time.Duration `json:"previous_run_time"`
	// Serial, Digest and Format identify the spec.
	Serial uint64 `json:"serial"`
	Digest string `json:"digest,omitempty"`
	Format string `json:"format,omitempty"`
	// Stale reports that the accepted spec has expired.
	Stale bool `json:"stale"`
	// Rejected says why the spec was not acted on (see manager.Rejection).
	Rejected string `json:"rejected,omitempty"`
	// Results has what happened to each machine; for a spec of more than
	// maxEventResults entries, to those that did not stay as they were
	// (skipped or unchanged), up to that many.
	Results []manager.MachineResult `json:"results"`
	// OmittedResults counts the results left out of Results, so that the
	// event of a large spec stays far below NATS's 1 MiB (the 10,000
	// results of a 10,000-entry spec are about 2 MB).
	OmittedResults int `json:"omitted_results,omitempty"`
	// Reason is the rejection or the entries' failures. It is not called
	// "error": the agent owns that field of every state event (the
	// check's own error) and drops a watcher's value for it.
	Reason string `json:"reason,omitempty"`
}

// maxEventResults bounds the results a state event lists.
const maxEventResults = 1000

// eventResults returns the results a state event lists and how many it
// leaves out: all of them up to maxEventResults, else those that did not
// stay as they were (not skipped, not unchanged), in spec order, up to
// maxEventResults.
func eventResults(all []manager.MachineResult) ([]manager.MachineResult, int) {
	if len(all) <= maxEventResults {
		return all, 0
	}
	var keep []manager.MachineResult
	for _, r := range all {
		if r.Outcome == manager.EntrySkipped || r.Outcome == manager.EntryUnchanged || len(keep) == maxEventResults {
			continue
		}
		keep = append(keep, r)
	}
	return keep, len(all) - len(keep)
}

// runState is what the watcher remembers between checks.
type runState struct {
	running   []string // the last accepted spec's running machines
	lastKey   string   // what the previous check found, for de-duplication
	stale     bool     // the previous accepted spec was stale
	accepted  string   // digest of the last accepted spec, reported
	recovered bool     // the installer's crash recovery ran

	retries     int    // consecutive passes with a retryable failure
	retryDigest string // the spec those passes were of
}

// recoverer is implemented by installers that clean up after a crash; the
// watcher runs it once, before its first reconcile.
type recoverer interface {
	Recover(ctx context.Context) error
}

// Check reconciles the node with the spec in the data item.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	start := time.Now()
	if r, ok := w.inst.(recoverer); ok && !w.runtime.recovered {
		if err := r.Recover(ctx); err != nil {
			return watchers.Result{}, fmt.Errorf("recover interrupted installs: %w", err)
		}
		w.runtime.recovered = true
	}
	v, ok := w.data.Get(w.DataItem)
	if !ok {
		return w.result(w.rec.Rejected(manager.RejectMissing,
			fmt.Errorf("data item %q is missing: no spec received yet, or its KV key was deleted; the installed machines keep running and nothing is purged", w.DataItem),
		), start)
	}
	envelope, err := envelopeBytes(v)
	if err != nil {
		return w.result(w.rec.Rejected(manager.RejectMalformed, fmt.Errorf("data item %q: %w", w.DataItem, err)), start)
	}
	opts := manager.ReconcileOptions{Verify: manager.VerifyQuick}
	full := w.lastFull.IsZero() || start.Sub(w.lastFull) >= w.verifyEvery
	if full {
		opts.Verify = manager.VerifyFull
	}
	cctx, done := w.checks.start(ctx, v)
	opts.Interrupt = cctx // a newer spec stops the downloads, not the loads
	w.progress.passStart(envelope)
	rep := w.rec.Reconcile(ctx, envelope, opts)
	superseded := errors.Is(context.Cause(cctx), errSuperseded)
	done()
	if ctx.Err() != nil {
		// The agent is stopping: what the pass did not finish is not a
		// failure, and no retry is due; the pass runs again when the agent
		// starts.
		w.log.Info("reconcile pass stopped: the agent is stopping; it runs again when the agent starts", "serial", rep.Serial, "cause", context.Cause(ctx))
		return watchers.Result{Outcome: watchers.Unchanged}, nil
	}
	if superseded {
		// The pass was stopped for a newer spec: report nothing about it
		// and check again at once (the kv watcher's transition pokes
		// too). The next pass reports the new spec.
		w.log.Info("reconcile pass stopped for a newer spec", "serial", rep.Serial)
		return watchers.Result{Outcome: watchers.Unchanged, After: supersededRecheck}, nil
	}
	if full && rep.Rejected == "" {
		w.lastFull = start
	}
	return w.result(rep, start)
}

// supersededRecheck is when a check stopped for a newer spec runs again.
const supersededRecheck = 10 * time.Millisecond

// Retries of failed entries: a pass with a failure a retry may fix (a
// download, a governor, a matcher probe) is followed by another after a
// capped, jittered exponential backoff, instead of only at the interval.
const (
	// RetryFirst is the delay before the first retry.
	RetryFirst = 2 * time.Second
	// RetryMax caps the delay between retries (the default interval).
	RetryMax = DefaultInterval
)

// retryDelay is the delay before retry n (1 for the first): RetryFirst
// doubling up to RetryMax, jittered to [d/2, d] so nodes that failed
// together do not retry together.
func retryDelay(n int) time.Duration {
	return backoff.Policy{First: RetryFirst, Max: RetryMax}.Jittered(n)
}

// envelopeBytes turns the data item's value into envelope bytes. The kv
// watcher stores a JSON object value as a map and anything else as a
// string. A map is marshalled back to JSON: that is safe because the
// signatures cover the base64 payload (v2) or machines (v1) string, never
// the envelope's own formatting, and Open decodes those strings exactly.
// (Duplicate keys in the stored JSON were already resolved by the kv
// watcher's decoder; every copy would need a valid signature anyway.)
func envelopeBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case map[string]any:
		b, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("re-encode the spec envelope: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("holds a %T, want a spec envelope (a JSON object or a string)", v)
	}
}

// result turns a report into the check's result and remembers what it
// needs for the next check.
func (w *Watcher) result(rep manager.PassReport, start time.Time) (watchers.Result, error) {
	if w.Status != nil {
		w.Status.ReportPass(rep)
	}
	if rep.Rejected == "" {
		w.runtime.running = rep.Running()
	}
	st := State{
		Machines:        w.runtime.running,
		PreviousOutcome: "unchanged",
		PreviousRunTime: time.Since(start),
		Serial:          rep.Serial,
		Digest:          rep.Digest,
		Format:          rep.Format,
		Stale:           rep.Stale,
		Rejected:        string(rep.Rejected),
	}
	st.Results, st.OmittedResults = eventResults(rep.Machines)
	if st.Machines == nil {
		st.Machines = []string{}
	}
	if st.Results == nil {
		st.Results = []manager.MachineResult{}
	}
	if rep.Err != nil {
		st.Reason = rep.Err.Error()
	}
	switch {
	case rep.Failed():
		st.PreviousOutcome = "error"
	case rep.Changed():
		st.PreviousOutcome = "updated"
	}
	key := dedupeKey(rep)
	outcome := w.outcome(rep, key)
	w.runtime.lastKey = key
	if rep.Rejected == "" {
		w.runtime.stale = rep.Stale
		w.runtime.accepted = rep.Digest
	}
	res := watchers.Result{Outcome: outcome, State: st}
	w.checks.setFleetWait(rep.FleetWait)
	res.After = w.scheduleRetry(rep)
	if rep.NextCheck > 0 && (res.After == 0 || rep.NextCheck < res.After) {
		res.After = rep.NextCheck // a health gate or a rollout wave is pending
	}
	w.progress.passDone(w.runtime.running)
	if rep.Rejected == manager.RejectError {
		// The spec could not be checked at all (an unreadable ledger):
		// an error, so the runner backs off and retries.
		return res, rep.Err
	}
	return res, nil
}

// scheduleRetry returns when to check again after a pass that left a
// retryable failure (zero: at the interval), and logs the retry with the
// failures it is for. A new spec starts the backoff over.
func (w *Watcher) scheduleRetry(rep manager.PassReport) time.Duration {
	if rep.Rejected != "" || !rep.Retryable() {
		w.runtime.retries = 0
		return 0
	}
	if rep.Digest != w.runtime.retryDigest {
		w.runtime.retries, w.runtime.retryDigest = 0, rep.Digest
	}
	w.runtime.retries++
	after := retryDelay(w.runtime.retries)
	var reasons []string
	for _, m := range rep.Machines {
		if m.Outcome == manager.EntryFailed && m.Retryable {
			reasons = append(reasons, m.Name+": "+m.Reason)
		}
	}
	w.log.Info("retrying failed entries", "retry", w.runtime.retries, "retry_in", after.Round(time.Millisecond),
		"serial", rep.Serial, "failures", strings.Join(reasons, "; "))
	return after
}

// outcome decides what a check with report rep reports: Failure when the
// spec was rejected or an entry failed, Success when something changed,
// Report for a warning, a spec that has just gone stale or a newly accepted
// spec, else Unchanged. A check that changed nothing and found exactly what
// the previous one found (key) is Unchanged, so a persistent problem
// publishes one event, not one per interval.
func (w *Watcher) outcome(rep manager.PassReport, key string) watchers.Outcome {
	switch {
	case !rep.Changed() && key == w.runtime.lastKey:
		return watchers.Unchanged
	case rep.Failed():
		return watchers.Failure
	case rep.Changed():
		return watchers.Success
	case rep.Rejected.Warning(), rep.Stale && !w.runtime.stale:
		return watchers.Report
	case rep.Rejected == "" && rep.Digest != w.runtime.accepted:
		// A new spec (or the first since the agent started) that changes
		// nothing here is still news: status and operators learn the
		// serial this node runs.
		return watchers.Report
	}
	return watchers.Unchanged
}

// dedupeKey summarises what a check found, for outcome.
func dedupeKey(rep manager.PassReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d %s %t %q", rep.Rejected, rep.Serial, rep.Digest, rep.Stale, fmt.Sprint(rep.Err))
	for _, m := range rep.Machines {
		fmt.Fprintf(&b, "|%q %s %q %s %q", m.Name, m.Outcome, m.Reason, m.Checksum, m.Tampered)
	}
	return b.String()
}

var _ watchers.Watcher = (*Watcher)(nil)
