package fleetstatus

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/agent"
)

// MachinesWatcherType is the watcher type whose state events carry the
// manager's view of the spec and its per-machine results.
const MachinesWatcherType = "machines"

// Recorder keeps what the status document needs from the agent's events:
// the spec and per-machine results the manager reports, machines the host
// failed to load, and the last error. Observe is cheap and never blocks, so
// it can sit in the publish path of every event. It is safe for concurrent
// use.
type Recorder struct {
	changed chan struct{} // capacity 1: something worth writing happened

	mu      sync.Mutex
	spec    Spec
	results map[string]result
	loads   map[string]loadRecord
	lastErr string
	errAt   time.Time
}

// result is the manager's outcome for one spec entry, as its machines
// watcher reports it in the "results" field of its state events.
type result struct {
	Name     string `json:"name"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason,omitempty"`
	Checksum string `json:"checksum,omitempty"`
}

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

// Observe takes what the document needs from one machine event: every
// event signals a change; watcher errors become the last error; host events
// track machines that failed to load; machines watcher events update the
// spec and the per-machine results. Events it cannot read are ignored.
func (r *Recorder) Observe(ev event.Event) {
	defer r.Touch()
	info, err := agent.ParseEvent(ev)
	if err != nil || info.Transition {
		return
	}
	var ms *machinesState
	if info.WatcherType == MachinesWatcherType {
		ms = parseMachinesState(ev.Data())
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
	switch info.WatcherType {
	case agent.HostWatcherType:
		r.observeHost(ev, info)
	case MachinesWatcherType:
		r.observeMachines(ms, info, at)
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

// observeMachines applies the fields a machines watcher event carries;
// missing fields leave what is known unchanged.
func (r *Recorder) observeMachines(ms *machinesState, info agent.EventInfo, at time.Time) {
	r.spec.ReportedAt = at
	r.spec.Error = info.Error
	if ms == nil {
		return
	}
	if ms.serial != nil {
		r.spec.Serial = *ms.serial
	}
	if ms.digest != nil {
		r.spec.Digest = *ms.digest
	}
	if ms.format != nil {
		r.spec.Format = *ms.format
	}
	if ms.stale != nil {
		r.spec.Stale = *ms.stale
	}
	if r.spec.Error == "" && ms.reason != nil && info.Outcome == "failure" {
		r.spec.Error = *ms.reason
	}
	if ms.results != nil {
		r.results = make(map[string]result, len(ms.results))
		for _, res := range ms.results {
			r.results[res.Name] = res
		}
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
