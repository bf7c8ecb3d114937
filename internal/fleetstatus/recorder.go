package fleetstatus

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
)

// Recorder keeps what the status document needs besides the host's machine
// states: the spec and per-entry results the manager reports after every
// pass ([Recorder.ReportPass], a typed call), machines the host failed to
// load and the last error (from the agent's events, [Recorder.Observe]).
// Both are cheap and never block, so they can sit in the manager's and the
// publisher's paths. It is safe for concurrent use.
type Recorder struct {
	changed chan struct{} // capacity 1: something worth writing happened

	mu      sync.Mutex
	spec    Spec
	results map[string]result
	loads   map[string]loadRecord
	lastErr string
	errAt   time.Time
}

// result is the manager's outcome for one spec entry.
type result = manager.MachineResult

// loadRecord is the host's last word about a machine it failed to load.
type loadRecord struct {
	version, path, err string
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		changed: make(chan struct{}, 1),
		results: map[string]result{},
		loads:   map[string]loadRecord{},
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
// results of the last accepted one stay.
func (r *Recorder) ReportPass(rep manager.PassReport) {
	defer r.Touch()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spec.Serial, r.spec.Digest, r.spec.Format = rep.Applied.Serial, rep.Applied.Digest, rep.Applied.Format
	r.spec.AcceptedAt = rep.Applied.AcceptedAt
	r.spec.ReportedAt = time.Now()
	r.spec.Seen = SeenSpec{Serial: rep.Serial, Digest: rep.Digest, Outcome: SeenApplied}
	r.spec.Error = ""
	if rep.Err != nil {
		r.spec.Error = rep.Err.Error()
	}
	if rep.Rejected != "" {
		r.spec.Seen.Outcome, r.spec.Seen.Reason = string(rep.Rejected), r.spec.Error
		return
	}
	r.spec.Stale = rep.Stale
	r.results = make(map[string]result, len(rep.Machines))
	for _, res := range rep.Machines {
		r.results[res.Name] = res
	}
}

// Observe takes what the document needs from one machine event: every
// event signals a change; watcher errors become the last error; host events
// track machines that failed to load. Events it cannot read are ignored.
func (r *Recorder) Observe(ev event.Event) {
	defer r.Touch()
	info, err := agent.ParseEvent(ev)
	if err != nil || info.Transition {
		return
	}
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
	spec    Spec
	results map[string]result
	loads   map[string]loadRecord
	lastErr string
	errAt   time.Time
}

func (r *Recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorded{
		spec:    r.spec,
		results: maps.Clone(r.results),
		loads:   maps.Clone(r.loads),
		lastErr: r.lastErr,
		errAt:   r.errAt,
	}
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

var _ manager.StatusReporter = (*Recorder)(nil)
