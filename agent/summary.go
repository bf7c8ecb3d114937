package agent

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// EventInfo is the part of a machine event a person reads: who, which
// machine, and what happened.
type EventInfo struct {
	// Time is the CloudEvent time.
	Time time.Time
	// Identity is the node the event came from.
	Identity string
	// Machine is the machine's name.
	Machine string
	// Transition is true for transition events.
	Transition bool
	// Name is the transition name or the watcher name.
	Name string
	// WatcherType is the watcher type of a state event ("host" for host
	// events).
	WatcherType string
	// From and To are a transition's states.
	From, To string
	// Outcome is a state event's outcome.
	Outcome string
	// Error and TransitionError are a state event's errors, if any.
	Error, TransitionError string
}

// eventFields is the union of the data fields EventInfo reads.
type eventFields struct {
	Identity        string `json:"identity"`
	Machine         string `json:"machine"`
	Transition      string `json:"transition"`
	FromState       string `json:"from_state"`
	ToState         string `json:"to_state"`
	Type            string `json:"type"`
	Name            string `json:"name"`
	Outcome         string `json:"outcome"`
	Error           string `json:"error"`
	TransitionError string `json:"transition_error"`
}

// ParseEvent reads the summary fields of a machine CloudEvent, ours or
// Choria's.
func ParseEvent(ev event.Event) (EventInfo, error) {
	var f eventFields
	if err := ev.DataAs(&f); err != nil {
		return EventInfo{}, fmt.Errorf("decode %s event data: %w", ev.Type(), err)
	}
	info := EventInfo{
		Time: ev.Time(), Identity: f.Identity, Machine: f.Machine,
		Outcome: f.Outcome, Error: f.Error, TransitionError: f.TransitionError,
	}
	if info.Identity == "" {
		info.Identity = ev.Subject()
	}
	if ev.Type() == TransitionEventType {
		info.Transition = true
		info.Name, info.From, info.To = f.Transition, f.FromState, f.ToState
		return info, nil
	}
	if !strings.HasPrefix(ev.Type(), "io.choria.machine.watcher.") {
		return EventInfo{}, fmt.Errorf("decode event: %q is not a machine event type", ev.Type())
	}
	info.WatcherType, info.Name = f.Type, f.Name
	return info, nil
}

// Summary describes the event in a few words: "transition maintain
// RUN -> MAINTENANCE" or "exec check_db failure: exit status 1".
func (i EventInfo) Summary() string {
	if i.Transition {
		return fmt.Sprintf("transition %s %s -> %s", i.Name, i.From, i.To)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", i.WatcherType, i.Name)
	if i.Outcome != "" {
		b.WriteString(" " + i.Outcome)
	}
	if i.Error != "" {
		b.WriteString(": " + i.Error)
	}
	if i.TransitionError != "" {
		b.WriteString(" (transition: " + i.TransitionError + ")")
	}
	return b.String()
}

// String formats the event as one line: time, identity, machine, summary.
func (i EventInfo) String() string {
	return fmt.Sprintf("%s %s %s %s", i.Time.Local().Format("2006-01-02T15:04:05.000Z07:00"), i.Identity, i.Machine, i.Summary())
}

// DescribeHostEvent says why a host event happened, from its data: the
// version a load replaced and the new one ("1.0.0 → 2.0.0"), or the
// version loaded; "" when the data names none.
func DescribeHostEvent(data []byte) string {
	var f struct {
		Version         string `json:"version"`
		PreviousVersion string `json:"previous_version"`
	}
	if json.Unmarshal(data, &f) != nil {
		return ""
	}
	switch {
	case f.PreviousVersion != "" && f.PreviousVersion != f.Version:
		return f.PreviousVersion + " → " + f.Version
	case f.Version != "":
		return f.Version
	}
	return ""
}
