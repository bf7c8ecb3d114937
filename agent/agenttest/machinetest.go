// Package agenttest runs a machine.yaml through the agent's real machine
// (FSM, Runner, events) for the tests of watcher types: the machine runs in
// a test directory and its events are recorded instead of published.
package agenttest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/watchers"
)

// Recorder is an agent.Publisher that keeps every event. It is safe for
// concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Event is one recorded event.
type Event struct {
	Subject string
	Type    string
	Data    map[string]any
}

// Publish records ev.
func (r *Recorder) Publish(_ context.Context, subject string, ev event.Event) error {
	var data map[string]any
	if err := ev.DataAs(&data); err != nil {
		return fmt.Errorf("decode %s event data: %w", ev.Type(), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Event{Subject: subject, Type: ev.Type(), Data: data})
	return nil
}

// Events returns the events recorded so far, in order.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Find returns the data of the recorded events of type typ whose data have
// every key of want with a value that prints the same.
func (r *Recorder) Find(typ string, want map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range r.Events() {
		if e.Type != typ {
			continue
		}
		ok := true
		for k, v := range want {
			if fmt.Sprint(e.Data[k]) != fmt.Sprint(v) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, e.Data)
		}
	}
	return out
}

// Options adjusts the machine Start builds.
type Options struct {
	// Dir is the machine directory; empty means a new t.TempDir.
	Dir string
	// Identity is the node identity; empty means "node1".
	Identity string
	// Facts are the node's facts; nil means the agent's built-in facts.
	Facts func() map[string]any
	// Conn is the node's NATS connection, if any.
	Conn *nats.Conn
}

// Start parses yaml, builds the machine in o.Dir and runs it until the
// test ends.
func Start(t testing.TB, yaml string, o Options) (*agent.Machine, *Recorder) {
	t.Helper()
	def, err := machine.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parse machine: %v", err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Identity == "" {
		o.Identity = "node1"
	}
	store, err := agent.OpenDataStore(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{}
	m, err := agent.NewMachine(def, agent.MachineConfig{
		Dir: o.Dir, Identity: o.Identity, Publisher: rec, Data: store, Facts: o.Facts, Conn: o.Conn,
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("new machine: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("machine run: %v", err)
		}
	})
	return m, rec
}

// Eventually polls f until it returns nil, failing the test after 10s.
func Eventually(t testing.TB, f func() error) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, f)
}

// StateEventType returns the CloudEvent type of watcher type typ's state
// events.
func StateEventType(typ string) string {
	return watchers.Info{Type: typ, Version: "v1"}.EventType()
}
