package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/watchers"
)

// describedType is a watcher type registered for these tests with a
// describer; plainType has none, so its events show their reason field.
const (
	describedType = "fleettest_described"
	plainType     = "fleettest_plain"
)

type noopWatcher struct{}

func (noopWatcher) Check(context.Context) (watchers.Result, error) { return watchers.Result{}, nil }

func init() {
	watchers.Register(watchers.Info{Type: describedType, New: func() watchers.Watcher { return noopWatcher{} },
		Describe: func(data []byte) string {
			var f struct {
				Count int `json:"count"`
			}
			if json.Unmarshal(data, &f) != nil || f.Count == 0 {
				return ""
			}
			return strings.Repeat("*", min(f.Count, 5))
		}})
	watchers.Register(watchers.Info{Type: plainType, New: func() watchers.Watcher { return noopWatcher{} }})
}

// eventJSON builds a machine event as an agent (or Choria) publishes it.
func eventJSON(t testing.TB, typ, identity string, data map[string]any) []byte {
	t.Helper()
	ev := event.New()
	ev.SetID("1")
	ev.SetType(typ)
	ev.SetSource(agent.EventSource)
	ev.SetSubject(identity)
	ev.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	data["identity"] = identity
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stateJSON(t testing.TB, typ, outcome string, data map[string]any) []byte {
	data["machine"], data["type"], data["name"], data["outcome"] = "m", typ, "w", outcome
	return eventJSON(t, watchers.Info{Type: typ, Version: "v1"}.EventType(), "web1", data)
}

func transitionJSON(t testing.TB, identity, machine string) []byte {
	return eventJSON(t, agent.TransitionEventType, identity, map[string]any{"machine": machine, "transition": "go", "from_state": "idle", "to_state": "busy"})
}

var lineTests = []struct {
	name string
	msg  func(t testing.TB) []byte
	why  string
	line string // after the time
}{
	{"transition", func(t testing.TB) []byte { return transitionJSON(t, "web1", "m") }, "", "web1 m transition go idle -> busy"},
	{"the type's describer", func(t testing.TB) []byte {
		return stateJSON(t, describedType, "failure", map[string]any{"count": 3, "reason": "not this"})
	}, "***", "web1 m " + describedType + " w failure: ***"},
	{"the describer has nothing to add", func(t testing.TB) []byte {
		return stateJSON(t, describedType, "success", map[string]any{"reason": "not this"})
	}, "", "web1 m " + describedType + " w success"},
	{"no describer: the reason field", func(t testing.TB) []byte {
		return stateJSON(t, plainType, "report", map[string]any{"reason": "key deleted"})
	}, "key deleted", "web1 m " + plainType + " w report: key deleted"},
	{"an unknown type: the reason field", func(t testing.TB) []byte {
		return stateJSON(t, "choria_only", "report", map[string]any{"reason": "from choria"})
	}, "from choria", "web1 m choria_only w report: from choria"},
	{"after an error, a semicolon", func(t testing.TB) []byte {
		return stateJSON(t, plainType, "error", map[string]any{"error": "boom", "reason": "why"})
	}, "why", "web1 m " + plainType + " w error: boom; why"},
	{"host events: the agent's words", func(t testing.TB) []byte {
		return stateJSON(t, agent.HostWatcherType, agent.HostLoaded, map[string]any{"version": "2.0.0", "previous_version": "1.0.0"})
	}, "1.0.0 → 2.0.0", "web1 m host w loaded: 1.0.0 → 2.0.0"},
	{"escaped", func(t testing.TB) []byte {
		return stateJSON(t, plainType, "report", map[string]any{"reason": "\x1b[2Jgone\nnext"})
	}, "\x1b[2Jgone\nnext", "web1 m " + plainType + " w report: " + termtext.Escape("\x1b[2Jgone\nnext")},
}

func TestEventLine(t *testing.T) {
	for _, tt := range lineTests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeEvent(tt.msg(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.Why(); got != tt.why {
				t.Errorf("Why() = %q, want %q", got, tt.why)
			}
			_, rest, _ := strings.Cut(ev.Line(), " ")
			if rest != tt.line {
				t.Errorf("Line() = %q, want %q after the time", rest, tt.line)
			}
		})
	}
}

func TestDecodeEventErrors(t *testing.T) {
	if _, err := DecodeEvent([]byte("not json")); !errors.Is(err, ErrNotCloudEvent) {
		t.Errorf("DecodeEvent(not json) = %v, want %v", err, ErrNotCloudEvent)
	}
	other := eventJSON(t, "com.example.other", "web1", map[string]any{})
	if _, err := DecodeEvent(other); !errors.Is(err, ErrNotMachineEvent) || errors.Is(err, ErrNotCloudEvent) {
		t.Errorf("DecodeEvent(another event type) = %v, want %v", err, ErrNotMachineEvent)
	}
}

func TestEventFilterMatch(t *testing.T) {
	exec := agent.EventInfo{Identity: "web1", Machine: "alpha", WatcherType: "exec"}
	trans := agent.EventInfo{Identity: "db1", Machine: "beta", Transition: true}
	tests := []struct {
		filter      EventFilter
		exec, trans bool
	}{
		{EventFilter{}, true, true},
		{EventFilter{Machine: "alpha"}, true, false},
		{EventFilter{Identity: "db1"}, false, true},
		{EventFilter{Type: "exec"}, true, false},
		{EventFilter{Type: TransitionType}, false, true},
		{EventFilter{Type: "kv"}, false, false},
		{EventFilter{Machine: "alpha", Identity: "db1"}, false, false},
		// Identity is an unanchored regular expression, as for reconcile
		// and machine transition.
		{EventFilter{Identity: "^web"}, true, false},
		{EventFilter{Identity: "1$"}, true, true},
		{EventFilter{Identity: "b"}, true, true},
		{EventFilter{Identity: "^web1$"}, true, false},
		{EventFilter{Identity: "^web$"}, false, false},
		{EventFilter{Identity: "web1|db1"}, true, true},
	}
	for _, tt := range tests {
		compiled, err := tt.filter.Compile()
		if err != nil {
			t.Fatalf("%+v.Compile() = %v", tt.filter, err)
		}
		for _, f := range []EventFilter{tt.filter, compiled} {
			if got := f.Match(exec); got != tt.exec {
				t.Errorf("%+v.Match(exec event) = %v, want %v", f, got, tt.exec)
			}
			if got := f.Match(trans); got != tt.trans {
				t.Errorf("%+v.Match(transition) = %v, want %v", f, got, tt.trans)
			}
		}
	}
}

// An identity that is not a regular expression is refused by Compile,
// naming it, and matches nothing uncompiled.
func TestEventFilterBadIdentity(t *testing.T) {
	f := EventFilter{Identity: "web[1"}
	_, err := f.Compile()
	if want := "identity \"web[1\": error parsing regexp: missing closing ]: `[1`"; err == nil || err.Error() != want {
		t.Errorf("Compile() = %v, want %s", err, want)
	}
	if f.Match(agent.EventInfo{Identity: "web[1"}) {
		t.Errorf("Match with a bad pattern kept an event")
	}
}

// SubscribeEvents follows new events, or replays the stream's history
// first, in order, and says clearly when there is no history.
func TestSubscribeEvents(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	msgs := make(chan *nats.Msg, 16)
	if _, err := SubscribeEvents(t.Context(), nc, time.Hour, time.Second, msgs); !errors.Is(err, ErrNoEventHistory) {
		t.Fatalf("SubscribeEvents(since 1h) without the stream = %v, want %v", err, ErrNoEventHistory)
	}

	stop, err := SubscribeEvents(t.Context(), nc, 0, time.Second, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(agent.TransitionSubject, transitionJSON(t, "web1", "live")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if got := machineOf(t, m); got != "live" {
			t.Errorf("live event of machine %q, want live", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live event")
	}
	stop()

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: agent.EventsStream, Subjects: []string{agent.EventsSubjects}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"old1", "old2"} {
		if _, err := js.Publish(t.Context(), agent.TransitionSubject, transitionJSON(t, "web1", m)); err != nil {
			t.Fatal(err)
		}
	}
	stop, err = SubscribeEvents(t.Context(), nc, time.Hour, time.Second, msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, err := js.Publish(t.Context(), agent.TransitionSubject, transitionJSON(t, "web1", "new")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"old1", "old2", "new"} {
		select {
		case m := <-msgs:
			if got := machineOf(t, m); got != want {
				t.Fatalf("replayed event of machine %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event of machine %q replayed", want)
		}
	}
}

func machineOf(t *testing.T, m *nats.Msg) string {
	t.Helper()
	ev, err := DecodeEvent(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Info.Machine
}

// Events are bytes anyone on the events subjects can publish: decoding
// never panics and a line is always one inert line.
func FuzzDecodeEvent(f *testing.F) {
	for _, tt := range lineTests {
		f.Add(tt.msg(f))
	}
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"x","type":"io.choria.machine.watcher.fleettest_described.v1.state","data":{"count":"x"}}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ev, err := DecodeEvent(msg)
		if err != nil {
			return
		}
		line := ev.Line()
		if strings.ContainsRune(line, '\n') || termtext.Escape(line) != line {
			t.Fatalf("Line() = %q, not one inert line", line)
		}
	})
}
