package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
)

// observer follows the agents from outside, through the events they
// publish: when each identity's host loaded each version of a machine
// (the machine runs from that moment), and the failures that mean it never
// will.
type observer struct {
	subs []*nats.Subscription

	mu       sync.Mutex
	loaded   map[loadKey]time.Time // first load of a version, by identity
	counts   map[versionKey]int    // identities that loaded a version
	failures map[string]string     // last failure, by identity
	changed  chan struct{}         // closed and replaced on every load
}

type versionKey struct{ machine, version string }

type loadKey struct {
	identity string
	versionKey
}

// hostEvent is what the observer reads of host and machines events.
type hostEvent struct {
	Data struct {
		Identity string `json:"identity"`
		Machine  string `json:"machine"`
		Name     string `json:"name"`
		Version  string `json:"version"`
		Outcome  string `json:"outcome"`
		Error    string `json:"error"`
		// The machines watcher's state.
		Rejected string                  `json:"rejected"`
		Reason   string                  `json:"reason"`
		Results  []manager.MachineResult `json:"results"`
	} `json:"data"`
}

// observe subscribes to the events on nc.
func observe(nc *nats.Conn) (*observer, error) {
	o := &observer{
		loaded:   map[loadKey]time.Time{},
		counts:   map[versionKey]int{},
		failures: map[string]string{},
		changed:  make(chan struct{}),
	}
	for subject, handle := range map[string]nats.MsgHandler{
		agent.WatcherStateSubject(agent.HostWatcherType): o.onHost,
		agent.WatcherStateSubject("machines"):            o.onMachines,
	} {
		sub, err := nc.Subscribe(subject, handle)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("bench: subscribe to %s: %w", subject, err)
		}
		// Thousands of agents report at once: never drop an event.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			o.close()
			return nil, fmt.Errorf("bench: %w", err)
		}
		o.subs = append(o.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		o.close()
		return nil, fmt.Errorf("bench: subscribe: %w", err)
	}
	return o, nil
}

func (o *observer) onHost(m *nats.Msg) {
	now := time.Now()
	var ev hostEvent
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	d := ev.Data
	o.mu.Lock()
	defer o.mu.Unlock()
	switch d.Outcome {
	case agent.HostLoaded:
		k := loadKey{d.Identity, versionKey{d.Name, d.Version}}
		if _, seen := o.loaded[k]; seen {
			return
		}
		o.loaded[k] = now
		o.counts[k.versionKey]++
		close(o.changed)
		o.changed = make(chan struct{})
	case agent.HostLoadFailed:
		o.failures[d.Identity] = fmt.Sprintf("load %s %s: %s", d.Name, d.Version, d.Error)
	}
}

func (o *observer) onMachines(m *nats.Msg) {
	var ev hostEvent
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	d := ev.Data
	var why []string
	if d.Rejected != "" {
		why = append(why, "spec rejected ("+d.Rejected+"): "+d.Reason)
	}
	for _, r := range d.Results {
		if r.Outcome == manager.EntryFailed {
			why = append(why, r.Name+": "+r.Reason)
		}
	}
	if len(why) == 0 {
		return
	}
	o.mu.Lock()
	o.failures[d.Identity] = strings.Join(why, "; ")
	o.mu.Unlock()
}

// count returns how many identities loaded version of machine, and a
// channel closed at the next load.
func (o *observer) count(machine, version string) (int, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[versionKey{machine, version}], o.changed
}

// await waits until n identities loaded version of machine, calling tick
// with the count as it grows, or until timeout passes.
func (o *observer) await(ctx context.Context, machine, version string, n int, timeout time.Duration, tick func(int)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		got, changed := o.count(machine, version)
		if tick != nil {
			tick(got)
		}
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return fmt.Errorf("%d of %d agents run %s %s after %v%s", got, n, machine, version, timeout, o.failureSample())
		}
	}
}

// loadedAt returns when identity loaded version of machine, and a
// channel closed at the next load.
func (o *observer) loadedAt(identity, machine, version string) (time.Time, bool, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.loaded[loadKey{identity, versionKey{machine, version}}]
	return t, ok, o.changed
}

// awaitOne waits until identity loaded version of machine and returns
// when it did.
func (o *observer) awaitOne(ctx context.Context, identity, machine, version string, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		t, ok, changed := o.loadedAt(identity, machine, version)
		if ok {
			return t, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return time.Time{}, context.Cause(ctx)
		case <-deadline.C:
			o.mu.Lock()
			why := o.failures[identity]
			o.mu.Unlock()
			if why != "" {
				why = "; it reported: " + why
			}
			return time.Time{}, fmt.Errorf("%s does not run %s %s after %v%s", identity, machine, version, timeout, why)
		}
	}
}

// loadTimes returns, for each identity, how long after start it loaded
// version of machine; identities that did not are left out.
func (o *observer) loadTimes(machine, version string, identities []string, start time.Time) []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]time.Duration, 0, len(identities))
	for _, id := range identities {
		if t, ok := o.loaded[loadKey{id, versionKey{machine, version}}]; ok {
			out = append(out, t.Sub(start))
		}
	}
	return out
}

// failureSample names a few failures the agents reported, if any.
func (o *observer) failureSample() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.failures) == 0 {
		return ""
	}
	ids := make([]string, 0, len(o.failures))
	for id := range o.failures {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids[:min(3, len(ids))] {
		parts = append(parts, id+": "+o.failures[id])
	}
	return fmt.Sprintf("; %d agents reported failures, e.g. %s", len(ids), strings.Join(parts, " | "))
}

// forgetFailures drops the failures reported so far, such as those of
// agents that started before their first spec arrived.
func (o *observer) forgetFailures() {
	o.mu.Lock()
	clear(o.failures)
	o.mu.Unlock()
}

func (o *observer) close() {
	for _, s := range o.subs {
		_ = s.Unsubscribe()
	}
}
