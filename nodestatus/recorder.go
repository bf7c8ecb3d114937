package nodestatus

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
)

// Recorder keeps what the status document needs besides the host's machine
// states: the applied and seen spec and the per-entry results the manager
// reports after every pass ([Recorder.ReportPass], a typed call), the
// progress of its downloads ([Recorder.ReportProgress]), machines the host
// failed to load and the last error (from the agent's events,
// [Recorder.Observe]). All are cheap and never block, so they can sit in
// the manager's and the publisher's paths. It is safe for concurrent use.
type Recorder struct {
	changed chan struct{}    // capacity 1: something worth writing happened
	now     func() time.Time // the clock; tests set it

	mu       sync.Mutex
	applied  *Applied
	seen     *Seen
	results  []result // the last accepted pass's, in spec order
	progress map[string]progress
	loads    map[string]loadRecord
	lastErr  string
	errAt    time.Time
}

// result is the manager's outcome for one spec entry.
type result = manager.MachineResult

// progress is a download under way and when it last signalled a change.
type progress struct {
	Download
	signalled time.Time
}

// ProgressInterval is the shortest time between two changes a download's
// progress signals: faster reports update the document's next write but
// do not cause one.
const ProgressInterval = time.Second

// loadRecord is the host's last word about a machine it failed to load.
type loadRecord struct {
	version, path, err string
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		changed:  make(chan struct{}, 1),
		now:      time.Now,
		progress: map[string]progress{},
		loads:    map[string]loadRecord{},
	}
}

// Changed receives a value after anything that may change the document
// (several changes may be coalesced into one).
func (r *Recorder) Changed() <-chan struct{} { return r.changed }

// Touch signals a change that the Recorder does not see itself, such as a
// NATS reconnect.
func (r *Recorder) Touch() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// RecordError makes err the document's last error.
func (r *Recorder) RecordError(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	r.lastErr, r.errAt = err.Error(), time.Now()
	r.mu.Unlock()
	r.Touch()
}

// ReportPass takes the manager's report of a reconcile pass: the spec the
// node runs (applied), the spec it saw and what it did with it, and one
// result per entry. A rejected spec changes nothing on the node, so the
// results of the last accepted one stay. The pass's downloads are over.
func (r *Recorder) ReportPass(rep manager.PassReport) {
	defer r.Touch()
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.progress)
	var applied *Applied
	if a := rep.Applied; a != (manager.AppliedSpec{}) {
		applied = &Applied{Serial: a.Serial, Digest: a.Digest, Format: a.Format, AcceptedAt: a.AcceptedAt}
		switch {
		case rep.Rejected == "":
			applied.Stale = rep.Stale
		case r.applied != nil && r.applied.Digest == a.Digest:
			applied.Stale = r.applied.Stale
		}
	}
	r.applied = applied
	r.seen = &Seen{Serial: rep.Serial, Digest: rep.Digest, Format: rep.Format, Outcome: rep.Rejected.Outcome(rep.Format), At: now}
	if rep.Err != nil {
		r.seen.Reason = rep.Err.Error()
	}
	if rep.Rejected == "" {
		r.results = slices.Clone(rep.Machines)
	}
}

// ReportApplying takes the spec a pass under way applies (its downloads
// are slow enough to report): the document's seen spec becomes it, with
// outcome [SeenApplying], until the pass reports.
func (r *Recorder) ReportApplying(a manager.AppliedSpec) {
	now := r.now()
	r.mu.Lock()
	r.seen = &Seen{Serial: a.Serial, Digest: a.Digest, Format: a.Format, Outcome: SeenApplying, At: now}
	r.mu.Unlock()
	r.Touch()
}

// ReportProgress takes the progress of the download of entry name's
// archive: done of total bytes (total 0 when unknown). The entry shows as
// downloading until the pass reports. It signals a change for the first
// report of a download, its last (done reaching total) and otherwise at
// most once per [ProgressInterval], so a download reported on every read
// costs a write a second at most.
func (r *Recorder) ReportProgress(name string, done, total int64) {
	total = max(total, 0) // the manager says -1 for "not known yet"
	now := r.now()
	r.mu.Lock()
	p, ok := r.progress[name]
	if !ok {
		p.StartedAt = now
	}
	p.Done, p.Total, p.UpdatedAt = done, total, now
	signal := !ok || (total > 0 && done >= total) || now.Sub(p.signalled) >= ProgressInterval
	if signal {
		p.signalled = now
	}
	r.progress[name] = p
	r.mu.Unlock()
	if signal {
		r.Touch()
	}
}

// Observe takes what the document needs from one machine event: watcher
// errors become the last error; host events track machines that failed to
// load. Those, and transitions, signal a change; other events (a check's
// routine outcome, many a minute on a node with many machines) do not,
// since they change nothing the document shows: machine states and
// watcher errors come from the host, whose change hook
// (agent.HostConfig.OnChange) calls [Recorder.Touch]. Events it cannot
// read are ignored.
func (r *Recorder) Observe(ev event.Event) {
	info, err := agent.ParseEvent(ev)
	if err != nil {
		return
	}
	if info.Transition {
		r.Touch()
		return
	}
	if info.Error == "" && info.WatcherType != agent.HostWatcherType {
		return
	}
	defer r.Touch()
	at := ev.Time()
	if at.IsZero() {
		at = time.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if info.Error != "" {
		r.lastErr = fmt.Sprintf("%s %s %s: %s", info.Machine, info.WatcherType, info.Name, info.Error)
		r.errAt = at
	}
	if info.WatcherType == agent.HostWatcherType {
		r.observeHost(ev, info)
	}
}

// observeHost tracks load failures: a failed load is remembered until the
// machine loads or is unloaded.
func (r *Recorder) observeHost(ev event.Event, info agent.EventInfo) {
	switch info.Outcome {
	case agent.HostLoadFailed:
		var f struct {
			Version string `json:"version"`
			Path    string `json:"path"`
		}
		_ = ev.DataAs(&f) // ParseEvent decoded the same data already
		r.loads[info.Machine] = loadRecord{version: f.Version, path: f.Path, err: info.Error}
	case agent.HostLoaded, agent.HostUnloaded:
		delete(r.loads, info.Machine)
	}
}

// recorded is a copy of what a Recorder knows.
type recorded struct {
	applied  *Applied
	seen     *Seen
	results  []result
	progress map[string]Download
	loads    map[string]loadRecord
	lastErr  string
	errAt    time.Time
}

func (r *Recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := recorded{
		results:  slices.Clone(r.results),
		progress: make(map[string]Download, len(r.progress)),
		loads:    maps.Clone(r.loads),
		lastErr:  r.lastErr,
		errAt:    r.errAt,
	}
	if r.applied != nil {
		a := *r.applied
		rec.applied = &a
	}
	if r.seen != nil {
		s := *r.seen
		rec.seen = &s
	}
	for name, p := range r.progress {
		rec.progress[name] = p.Download
	}
	return rec
}

// Publisher publishes through Next and shows every event to Recorder, so
// the status document follows the agent's events without a subscription.
// Recorder sees the event even when Next fails (NATS may be down; the
// document is written once it is back).
type Publisher struct {
	Next     agent.Publisher
	Recorder *Recorder
}

var _ agent.Publisher = Publisher{}

// Publish publishes ev through Next, if set, and records it.
func (p Publisher) Publish(ctx context.Context, subject string, ev event.Event) error {
	var err error
	if p.Next != nil {
		err = p.Next.Publish(ctx, subject, ev)
	}
	p.Recorder.Observe(ev)
	return err
}

var (
	_ manager.StatusReporter   = (*Recorder)(nil)
	_ manager.ProgressReporter = (*Recorder)(nil)
)
