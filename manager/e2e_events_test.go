package manager_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	machineswatcher "github.com/mms-io/mms/manager/machineswatcher"
)

// seenEvent is one machine CloudEvent received on NATS.
type seenEvent struct {
	subject string
	info    agent.EventInfo
	ev      event.Event
}

// machinesEvent is a state event of the manager's machines watcher.
type machinesEvent struct {
	Info  agent.EventInfo
	State machineswatcher.State
}

// result returns the event's result for machine name.
func (e machinesEvent) result(name string) (manager.MachineResult, bool) {
	i := slices.IndexFunc(e.State.Results, func(r manager.MachineResult) bool { return r.Name == name })
	if i < 0 {
		return manager.MachineResult{}, false
	}
	return e.State.Results[i], true
}

// outcomes summarises the event's results as name=outcome.
func (e machinesEvent) outcomes() []string {
	out := make([]string, 0, len(e.State.Results))
	for _, r := range e.State.Results {
		out = append(out, r.Name+"="+string(r.Outcome))
	}
	return out
}

// eventLog keeps every machine event published on the server, decoded with
// the CloudEvents SDK.
type eventLog struct {
	mu     sync.Mutex
	events []seenEvent
	errs   []error
}

func subscribeEvents(tb testing.TB, nc *nats.Conn) *eventLog {
	tb.Helper()
	l := &eventLog{}
	sub, err := nc.Subscribe(agent.EventsSubjects, func(msg *nats.Msg) {
		var ev event.Event
		err := json.Unmarshal(msg.Data, &ev)
		var info agent.EventInfo
		if err == nil {
			info, err = agent.ParseEvent(ev)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("event on %s: %w", msg.Subject, err))
			return
		}
		l.events = append(l.events, seenEvent{subject: msg.Subject, info: info, ev: ev})
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = sub.Unsubscribe()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, err := range l.errs {
			tb.Errorf("undecodable event: %v", err)
		}
	})
	return l
}

// mark returns the number of events received so far.
func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// since returns the events received after mark.
func (l *eventLog) since(mark int) []seenEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events[mark:])
}

// machinesSince decodes the machines watcher's state events after mark.
func (l *eventLog) machinesSince(tb testing.TB, mark int) []machinesEvent {
	tb.Helper()
	var out []machinesEvent
	for _, e := range l.since(mark) {
		if e.subject != agent.WatcherStateSubject("machines") {
			continue
		}
		var st machineswatcher.State
		if err := e.ev.DataAs(&st); err != nil {
			tb.Fatalf("decode machines state event: %v", err)
		}
		out = append(out, machinesEvent{Info: e.info, State: st})
	}
	return out
}

// waitMachines waits for a machines watcher state event after mark that ok
// accepts, and returns it.
func (l *eventLog) waitMachines(tb testing.TB, mark int, ok func(machinesEvent) bool) machinesEvent {
	tb.Helper()
	var found machinesEvent
	natstest.Eventually(tb, e2eWait, func() error {
		evs := l.machinesSince(tb, mark)
		for _, e := range evs {
			if ok(e) {
				found = e
				return nil
			}
		}
		var seen []string
		for _, e := range evs {
			seen = append(seen, fmt.Sprintf("serial %d %s rejected=%q %v", e.State.Serial, e.Info.Outcome, e.State.Rejected, e.outcomes()))
		}
		return fmt.Errorf("no matching machines event yet; seen: [%s]", strings.Join(seen, "; "))
	})
	return found
}

// waitEvent waits for an event after mark that ok accepts.
func (l *eventLog) waitEvent(tb testing.TB, mark int, what string, ok func(seenEvent) bool) seenEvent {
	tb.Helper()
	var found seenEvent
	natstest.Eventually(tb, e2eWait, func() error {
		for _, e := range l.since(mark) {
			if ok(e) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s event yet", what)
	})
	return found
}
