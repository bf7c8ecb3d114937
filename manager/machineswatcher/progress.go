package machineswatcher

import (
	"slices"
	"sync"
	"time"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
)

// ProgressState is the type-specific part of a machines watcher's state
// event about a download in progress (outcome "report"): Choria's fields,
// with previous_outcome "downloading", plus the download.
type ProgressState struct {
	// Machines names the machines running on this node, as in State.
	Machines []string `json:"machines"`
	// PreviousOutcome is "downloading".
	PreviousOutcome string `json:"previous_outcome"`
	// Serial, Digest and Format identify the spec being applied, as in
	// State.
	Serial uint64 `json:"serial"`
	Digest string `json:"digest,omitempty"`
	Format string `json:"format,omitempty"`
	// Download is the download in progress.
	Download DownloadProgress `json:"download"`
}

// DownloadProgress is how far one archive download is.
type DownloadProgress struct {
	// Machine is the spec entry's name.
	Machine string `json:"machine"`
	// Done is the bytes received; Total the archive's size, -1 when not
	// known.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Rate is the bytes per second since the previous report.
	Rate int64 `json:"rate"`
}

// progress is the machines watcher's manager.ProgressReporter: it hands
// download progress to the status document (when the watcher's status
// reporter takes it) and publishes it as a state event. The fetcher paces
// the calls (manager.DefaultProgressInterval), so events are paced too.
type progress struct {
	status manager.ProgressReporter // nil: the status document does not take progress
	report func(state any)          // nil: no events

	mu      sync.Mutex
	running []string
	last    map[string]progressMark // name → the previous report
	// envelope is the spec of the pass under way; spec, once a download
	// reported, what it claims (the pass verified it before downloading).
	envelope []byte
	spec     *manager.AppliedSpec
}

// progressMark is a download's previous report, for its rate.
type progressMark struct {
	at   time.Time
	done int64
}

// progressReporter returns the reporter the installer gets, or nil when
// progress would go nowhere.
func (w *Watcher) progressReporter() manager.ProgressReporter {
	status, _ := w.Status.(manager.ProgressReporter)
	if status == nil && w.reportState == nil {
		return nil
	}
	w.progress = &progress{status: status, report: w.reportState, last: map[string]progressMark{}}
	return w.progress
}

// ReportProgress implements manager.ProgressReporter. The first report of
// a pass also tells the status which spec the pass applies.
func (p *progress) ReportProgress(name string, done, total int64) {
	applying, first := p.applying()
	if first {
		if a, ok := p.status.(manager.ApplyingReporter); ok {
			a.ReportApplying(applying)
		}
	}
	if p.status != nil {
		p.status.ReportProgress(name, done, total)
	}
	if p.report == nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	prev, ok := p.last[name]
	if !ok || done < prev.done { // the first report, or a new attempt
		prev = progressMark{at: now.Add(-manager.DefaultProgressDelay)}
	}
	rate := int64(0)
	if d := now.Sub(prev.at).Seconds(); d > 0 {
		rate = int64(float64(done-prev.done) / d)
	}
	if total >= 0 && done >= total {
		delete(p.last, name)
	} else {
		p.last[name] = progressMark{at: now, done: done}
	}
	running := slices.Clone(p.running)
	p.mu.Unlock()
	if running == nil {
		running = []string{}
	}
	p.report(ProgressState{Machines: running, PreviousOutcome: "downloading",
		Serial: applying.Serial, Digest: applying.Digest, Format: applying.Format,
		Download: DownloadProgress{Machine: name, Done: done, Total: total, Rate: rate}})
}

// applying returns the spec of the pass under way (zero when it cannot be
// told), and whether this is the first time in the pass it is asked.
func (p *progress) applying() (spec manager.AppliedSpec, first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spec != nil {
		return *p.spec, false
	}
	p.spec = &manager.AppliedSpec{}
	if o, err := packer.Inspect(p.envelope); err == nil {
		*p.spec = manager.AppliedSpec{Serial: o.Spec.Serial, Digest: o.Digest, Format: o.Format.String()}
	}
	return *p.spec, true
}

// passStart records the spec envelope a pass is about to reconcile.
func (p *progress) passStart(envelope []byte) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.envelope, p.spec = envelope, nil
}

// passDone records what runs after a pass and forgets the downloads of it.
func (p *progress) passDone(running []string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = slices.Clone(running)
	clear(p.last)
}

var _ manager.ProgressReporter = (*progress)(nil)
