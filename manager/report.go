package manager

import (
	"fmt"
	"slices"
	"time"

	"github.com/mms-io/mms/manager/rollout"
)

// SpecLabel names a spec for people: "serial 17", "v1 0123456789ab" for a
// v1 spec (which has no serial), "spec 0123456789ab" when only its digest
// is known, or "spec" when the envelope did not decode far enough to tell.
func SpecLabel(format string, serial uint64, digest string) string {
	switch {
	case format == "v1":
		return "v1 " + short(digest)
	case serial > 0:
		return fmt.Sprintf("serial %d", serial)
	case digest != "":
		return "spec " + short(digest)
	}
	return "spec"
}

// PassReport is what one reconcile pass did.
type PassReport struct {
	// Serial, Digest and Format identify the spec that was reconciled (the
	// spec the node saw). For a rejected spec they are what the envelope
	// claims, unverified, when it decodes far enough to tell.
	Serial uint64 `json:"serial"`
	Digest string `json:"digest,omitempty"`
	Format string `json:"format,omitempty"`
	// Applied is the spec the node runs: this pass's spec unless it was
	// rejected, else the last one accepted (after a restart, the one in the
	// replay ledger). Zero when the node never accepted a spec.
	Applied AppliedSpec `json:"applied,omitzero"`
	// Unchanged reports that the spec is the one already accepted.
	Unchanged bool `json:"unchanged,omitempty"`
	// Stale reports that the accepted spec has expired: its machines keep
	// running, nothing is purged, and an operator should publish a new one.
	Stale bool `json:"stale,omitempty"`
	// Rejected, when set, says why the spec was not acted on at all; then
	// Machines is empty and nothing on the node changed.
	Rejected Rejection `json:"rejected,omitempty"`
	// Machines has one result per spec entry, in spec order, then one per
	// purged (or failed purge of a) machine, by name.
	Machines []MachineResult `json:"results"`
	// NextCheck, when positive, is how soon another pass should run by
	// itself: a health gate is pending, a rollout's pause ends, or a held
	// entry looks at the fleet again (HeldRecheck).
	NextCheck time.Duration `json:"-"`
	// FleetWait reports that a rollout holds an entry on what the fleet
	// reports: a change of a node's report (FleetNotifier) may let it go,
	// so the caller runs a pass when one comes.
	FleetWait bool `json:"-"`
	// Err is the rejection, or every entry's failure (and a failure to read
	// the install records for purging) joined; nil when all went well. A
	// rejection matches its packer sentinel with errors.Is.
	Err error `json:"-"`
}

// AppliedSpec identifies the spec a node runs.
type AppliedSpec struct {
	Serial     uint64    `json:"serial"`
	Digest     string    `json:"digest"`
	Format     string    `json:"format"`
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
}

// StatusReporter receives the report of every reconcile pass, as typed
// values: the agent's status document is written from it (the events are
// the public stream; nothing re-reads them). ReportPass must not block.
type StatusReporter interface {
	ReportPass(PassReport)
}

// ProgressReporter receives the progress of archive downloads that take
// more than a couple of seconds (see DefaultProgressDelay): done bytes of
// total (-1 when the size is not known yet) for the entry named name,
// paced to one call per DefaultProgressInterval, and a last call when the
// attempt ends. The agent's status recorder implements it (the status
// document's "downloading" entry); the machines watcher also publishes it
// as events. ReportProgress must not block: it runs on a timer.
type ProgressReporter interface {
	ReportProgress(name string, done, total int64)
}

// ApplyingReporter is told which spec a reconcile pass is applying while
// the pass is still under way: the machines watcher reports it with the
// first progress of a slow download, so a status can say "applying serial
// 12" instead of what it saw before. ReportApplying must not block.
type ApplyingReporter interface {
	ReportApplying(AppliedSpec)
}

// DownloadText describes a download in progress for people: "downloading:
// 12.0 MiB of 50.0 MiB (24%)", or "downloading: 12.0 MiB so far" when the
// total is not known (zero or negative).
func DownloadText(done, total int64) string {
	if total <= 0 {
		return "downloading: " + bytesize(done) + " so far"
	}
	return fmt.Sprintf("downloading: %s of %s (%d%%)", bytesize(done), bytesize(total), done*100/total)
}

// bytesize formats n bytes for people.
func bytesize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Reporters hands every report to each of its members: the status
// document and the metrics both follow the manager. It forwards progress to
// the members that are ProgressReporters.
type Reporters []StatusReporter

// ReportPass forwards rep to every member.
func (rs Reporters) ReportPass(rep PassReport) {
	for _, r := range rs {
		r.ReportPass(rep)
	}
}

// ReportProgress forwards to every member that takes progress.
func (rs Reporters) ReportProgress(name string, done, total int64) {
	for _, r := range rs {
		if p, ok := r.(ProgressReporter); ok {
			p.ReportProgress(name, done, total)
		}
	}
}

// ReportApplying forwards to every member that takes it.
func (rs Reporters) ReportApplying(a AppliedSpec) {
	for _, r := range rs {
		if p, ok := r.(ApplyingReporter); ok {
			p.ReportApplying(a)
		}
	}
}

var (
	_ ProgressReporter = Reporters(nil)
	_ ApplyingReporter = Reporters(nil)
)

// Pacing of download progress reports.
const (
	// DefaultProgressDelay is how long a download runs, from the response,
	// before its progress is first reported: quick downloads report
	// nothing, also when they waited long for a busy server.
	DefaultProgressDelay = 2 * time.Second
	// DefaultProgressInterval is the least time between two progress
	// reports of one download.
	DefaultProgressInterval = 2 * time.Second
)

// MachineResult is what reconciling one machine did.
type MachineResult struct {
	// Name is the entry's (or purged machine's) name.
	Name string `json:"name"`
	// Outcome is what happened to it.
	Outcome EntryOutcome `json:"outcome"`
	// Reason explains a failure, a rollback, a skip or a repair.
	Reason string `json:"reason,omitempty"`
	// Checksum is the archive checksum the entry pins (empty for purges).
	Checksum string `json:"checksum,omitempty"`
	// Tampered names the file (or the tree) that periodic verification
	// found modified, after which the machine was reinstalled.
	Tampered string `json:"tampered,omitempty"`
	// Installed is the checksum of the version installed under the name
	// now (after a rollback or a hold, the older one); empty when none.
	Installed string `json:"installed,omitempty"`
	// Health is the health of the entry's version on this node: pending
	// (its gate is running), healthy, unhealthy or rolled_back; empty when
	// it is not installed.
	Health rollout.Health `json:"health,omitempty"`
	// HealthyAt is when it became healthy.
	HealthyAt time.Time `json:"healthy_at,omitzero"`
	// Match is the entry's matcher when it decided the outcome: the
	// expression that did not select this node (skipped) or could not be
	// evaluated (failed).
	Match string `json:"match,omitempty"`
	// Wave is this node's wave in the entry's rollout, from 1, when the
	// pass moves the node to a new version under a rollout policy (or a
	// rollout holds it); 0 otherwise. It is not encoded.
	Wave int `json:"-"`
	// Hold is the entry's hold when it decided the outcome: the
	// expression that holds this node (held: it keeps what it runs) or
	// could not be evaluated (failed).
	Hold string `json:"hold,omitempty"`
	// Retryable marks a failure that may go away without a new spec (a
	// download, a governor, a matcher probe, a load): the machines watcher
	// retries it with backoff. An invalid entry or a version that failed
	// to load is not retryable. It is not encoded.
	Retryable bool `json:"-"`
}

// Retryable reports whether an entry of the pass failed in a way a retry
// may fix (see MachineResult.Retryable).
func (r *PassReport) Retryable() bool {
	return slices.ContainsFunc(r.Machines, func(m MachineResult) bool { return m.Outcome == EntryFailed && m.Retryable })
}

// Changed reports whether the pass changed anything on the node.
func (r *PassReport) Changed() bool {
	return slices.ContainsFunc(r.Machines, func(m MachineResult) bool {
		switch m.Outcome {
		case EntryInstalled, EntryUpdated, EntryPurged, EntryRolledBack, EntryUnhealthy:
			return true
		}
		return false
	})
}

// Failed reports whether the spec was rejected (other than a replay, which
// is only a warning), an entry failed or the pass could not purge.
func (r *PassReport) Failed() bool {
	if r.Rejected != "" {
		return !r.Rejected.Warning()
	}
	return r.Err != nil
}

// Running returns the names of the spec's machines that are installed and
// meant to run on this node (installed, updated, unchanged or rolled back),
// in spec order. Unlike Choria's machines list it names what is deployed,
// not what is desired.
func (r *PassReport) Running() []string {
	var out []string
	for _, m := range r.Machines {
		switch m.Outcome {
		case EntryInstalled, EntryUpdated, EntryUnchanged, EntryRolledBack:
			out = append(out, m.Name)
		}
	}
	return out
}
