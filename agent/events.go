package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/mms-io/mms/watchers"
)

// Event names and NATS subjects. They are Choria's, so Choria consumers
// (choria machine watch, scout, tally) read mms events unchanged.
const (
	// EventSource is the CloudEvent source of every machine event.
	EventSource = "io.choria.machine"
	// TransitionEventType is the CloudEvent type of transition events.
	TransitionEventType = "io.choria.machine.v1.transition"
	// TransitionSubject is the NATS subject transition events go to.
	TransitionSubject = "choria.machine.transition"
	// EventsStream is the JetStream stream that keeps recent machine
	// events (created by the agent, read by `mms events --since`).
	EventsStream = "CHORIA_MACHINE"
	// EventsSubjects is the subject filter of [EventsStream].
	EventsSubjects = "choria.machine.>"
	// HostWatcherType is the watcher type of host events: machine loads,
	// load failures and unloads.
	HostWatcherType = "host"
	// HostEventType is the CloudEvent type of host events.
	HostEventType = "io.choria.machine.watcher.host.v1.state"
)

// Host event outcomes.
const (
	HostLoaded     = "loaded"
	HostLoadFailed = "load_failed"
	HostUnloaded   = "unloaded"
)

// WatcherStateSubject returns the NATS subject of state events of watchers
// of type typ: choria.machine.watcher.<typ>.state.
func WatcherStateSubject(typ string) string {
	return "choria.machine.watcher." + typ + ".state"
}

// TransitionData is the data of a transition event. The fields up to
// ToState are Choria's; Time is an mms addition.
type TransitionData struct {
	Protocol   string `json:"protocol"`
	Identity   string `json:"identity"`
	ID         string `json:"id"`
	Version    string `json:"version"`
	Timestamp  int64  `json:"timestamp"`
	Machine    string `json:"machine"`
	Transition string `json:"transition"`
	FromState  string `json:"from_state"`
	ToState    string `json:"to_state"`
	// Time is the event time with sub-second precision (RFC 3339).
	Time string `json:"time"`
}

// machineRef is what every event of a machine carries.
type machineRef struct {
	identity string
	id       string
	name     string
	version  string
}

// newCloudEvent returns a CloudEvent of type typ at now carrying data as
// JSON.
func newCloudEvent(typ, identity string, now time.Time, data any) (event.Event, error) {
	ev := event.New()
	ev.SetID(uuid.NewString())
	ev.SetType(typ)
	ev.SetSource(EventSource)
	if identity == "" {
		identity = "unknown"
	}
	ev.SetSubject(identity)
	ev.SetTime(now)
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		return ev, fmt.Errorf("encode %s event data: %w", typ, err)
	}
	return ev, nil
}

// transitionEvent builds the event for a transition of m.
func transitionEvent(m machineRef, transition, from, to string, now time.Time) (event.Event, error) {
	return newCloudEvent(TransitionEventType, m.identity, now, TransitionData{
		Protocol:   TransitionEventType,
		Identity:   m.identity,
		ID:         m.id,
		Version:    m.version,
		Timestamp:  now.Unix(),
		Machine:    m.name,
		Transition: transition,
		FromState:  from,
		ToState:    to,
		Time:       now.UTC().Format(time.RFC3339Nano),
	})
}

// stateReport is one watcher state to publish.
type stateReport struct {
	eventType   string // Info.EventType()
	watcherType string
	watcher     string
	outcome     string
	state       any // Result.State; must marshal to a JSON object (or null)
	err         error
	transErr    error
	announce    bool // a periodic republish of the last state
}

// stateEvent builds a watcher state event: Result.State's fields, then the
// common fields (which win), then mms's additions.
func stateEvent(m machineRef, r stateReport, now time.Time) (event.Event, error) {
	data := map[string]any{}
	if r.state != nil {
		b, err := json.Marshal(r.state)
		if err != nil {
			return event.Event{}, fmt.Errorf("encode %s state of watcher %q: %w", r.watcherType, r.watcher, err)
		}
		if string(b) != "null" {
			// UseNumber: a number such as a spec serial above 2^53 must
			// keep every digit, not pass through a float64.
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&data); err != nil {
				return event.Event{}, fmt.Errorf("encode %s state of watcher %q: not a JSON object: %w", r.watcherType, r.watcher, err)
			}
		}
	}
	maps.Copy(data, map[string]any{
		"protocol":  r.eventType,
		"identity":  m.identity,
		"id":        m.id,
		"version":   m.version,
		"timestamp": now.Unix(),
		"type":      r.watcherType,
		"machine":   m.name,
		"name":      r.watcher,
		"time":      now.UTC().Format(time.RFC3339Nano),
		"outcome":   r.outcome,
	})
	delete(data, "error")
	delete(data, "transition_error")
	if r.err != nil {
		data["error"] = r.err.Error()
	}
	if r.transErr != nil {
		data["transition_error"] = r.transErr.Error()
	}
	delete(data, "announce")
	if r.announce {
		data["announce"] = true
	}
	return newCloudEvent(r.eventType, m.identity, now, data)
}

// hostEvent builds a host event about machine name at path: shaped like a
// watcher state event of type "host" whose watcher name is the machine's.
// previous, when set, is the version a load replaced ("previous_version").
func hostEvent(identity, name, version, previous, path, outcome string, err error, now time.Time) (event.Event, error) {
	m := machineRef{identity: identity, id: watchers.InstanceID(identity, name), name: name, version: version}
	state := map[string]any{"path": path}
	if previous != "" {
		state["previous_version"] = previous
	}
	return stateEvent(m, stateReport{
		eventType:   HostEventType,
		watcherType: HostWatcherType,
		watcher:     name,
		outcome:     outcome,
		state:       state,
		err:         err,
	}, now)
}
