package beacon

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/watchers/watchertest"
)

func TestRegistered(t *testing.T) {
	if got := agent.RegisteredMachines(); !slices.Contains(got, Name) {
		t.Fatalf("agent.RegisteredMachines() = %v, want it to contain %q", got, Name)
	}
	defs, err := agent.BuildRegisteredMachines(agent.Node{Identity: "node.example.net"})
	if err != nil {
		t.Fatalf("agent.BuildRegisteredMachines: %v", err)
	}
	i := slices.IndexFunc(defs, func(d *machine.Definition) bool { return d.Name == Name })
	if i < 0 {
		t.Fatalf("agent.BuildRegisteredMachines() has no %q", Name)
	}
	def := defs[i]
	var types []string
	for _, w := range def.Watchers {
		types = append(types, w.Type)
	}
	if def.Version != "1.0.0" || def.InitialState != "BEATING" || !slices.Equal(types, []string{"heartbeat", "timer"}) {
		t.Errorf("beacon = version %q, initial state %q, watcher types %v; want 1.0.0, BEATING, [heartbeat timer]", def.Version, def.InitialState, types)
	}
}

// events is a Publisher that hands every event to the test.
type events chan event.Event

func (e events) Publish(ctx context.Context, _ string, ev event.Event) error {
	select {
	case e <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// next returns the next event for which match is true, skipping others.
func (e events) next(t *testing.T, what string, match func(agent.EventInfo) bool) (agent.EventInfo, event.Event) {
	t.Helper()
	deadline := time.After(10 * time.Second) // a failure guard, not a wait
	for {
		select {
		case ev := <-e:
			info, err := agent.ParseEvent(ev)
			if err != nil {
				t.Fatalf("agent.ParseEvent: %v", err)
			}
			if match(info) {
				return info, ev
			}
		case <-deadline:
			t.Fatalf("no %s event within 10s", what)
		}
	}
}

// TestRun runs the compiled-in machine: the heartbeat beats at start, a
// rest starts the timer, and waking up beats again.
func TestRun(t *testing.T) {
	def := machine.MustParse(machineYAML)
	ev := make(events, 64)
	m, err := agent.NewMachine(def, agent.MachineConfig{
		Dir:       t.TempDir(),
		Identity:  "node.example.net",
		Publisher: ev,
		Data:      watchertest.NewStore(),
	})
	if err != nil {
		t.Fatalf("agent.NewMachine(beacon): %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	beat := func(n float64) {
		t.Helper()
		_, raw := ev.next(t, "heartbeat", func(i agent.EventInfo) bool { return i.WatcherType == "heartbeat" })
		var data struct {
			Machine string  `json:"machine"`
			Name    string  `json:"name"`
			Beats   float64 `json:"beats"`
			Message string  `json:"message"`
		}
		if err := json.Unmarshal(raw.Data(), &data); err != nil {
			t.Fatal(err)
		}
		if data.Machine != Name || data.Name != "pulse" || data.Beats != n || data.Message != "compiled-in beacon" {
			t.Errorf("heartbeat event = %+v, want beacon/pulse beat %v with the configured message", data, n)
		}
	}
	beat(1)

	if err := m.Transition(ctx, "rest"); err != nil {
		t.Fatalf("Transition(rest): %v", err)
	}
	info, _ := ev.next(t, "timer", func(i agent.EventInfo) bool { return i.WatcherType == "timer" })
	if info.Name != "nap" || info.Outcome != "report" {
		t.Errorf("timer event = %+v, want nap reporting its start", info)
	}
	if err := m.Transition(ctx, "wake"); err != nil {
		t.Fatalf("Transition(wake): %v", err)
	}
	beat(2)
}
