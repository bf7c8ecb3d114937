package kvwatcher

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
)

// managerYAML is the shape of a manager machine: leave INITIAL as soon as
// the spec is readable (on_successful_get), then follow changes in MANAGE.
const managerYAML = `
name: kvmanager
version: 1.0.0
initial_state: INITIAL
transitions:
  - name: to_manage
    from: [INITIAL]
    destination: MANAGE
  - name: update
    from: [MANAGE]
    destination: MANAGE
watchers:
  - name: initial_specification
    type: kv
    state_match: [INITIAL]
    success_transition: to_manage
    properties:
      bucket: MACHINES
      key: spec
      bucket_prefix: false
      on_successful_get: true
  - name: specification
    type: kv
    state_match: [MANAGE]
    success_transition: update
    properties:
      bucket: MACHINES
      key: spec
      bucket_prefix: false
`

// recorder is an agent.Publisher that keeps every event's data.
type recorder struct {
	mu     sync.Mutex
	events []map[string]any
}

func (r *recorder) Publish(_ context.Context, _ string, ev event.Event) error {
	var data map[string]any
	if err := ev.DataAs(&data); err != nil {
		return err
	}
	data["_type"] = ev.Type()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, data)
	return nil
}

// find returns the events whose data has every field of match.
func (r *recorder) find(match map[string]any) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
next:
	for _, e := range r.events {
		for k, v := range match {
			if fmt.Sprint(e[k]) != fmt.Sprint(v) {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// waitEvents polls until exactly n events match.
func (r *recorder) waitEvents(t *testing.T, n int, match map[string]any) {
	t.Helper()
	natstest.Eventually(t, waitFor, func() error {
		if got := len(r.find(match)); got != n {
			return fmt.Errorf("%d events match %v, want %d", got, match, n)
		}
		return nil
	})
}

// runManager runs the manager machine with its data in dataDir until the
// returned stop is called (or the test ends).
func runManager(t *testing.T, env *kvEnv, dataDir string) (*agent.Machine, *recorder, func()) {
	t.Helper()
	store, err := agent.OpenDataStore(dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	m, err := agent.NewMachine(machine.MustParse([]byte(managerYAML)), agent.MachineConfig{
		Dir: t.TempDir(), Identity: "node1", Publisher: rec, Data: store, Conn: env.nc,
		Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("NewMachine(kv manager) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Machine.Run() = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return m, rec, stop
}

// TestManagerMachine runs a manager-shaped machine through the agent: it
// leaves INITIAL when the spec is readable, a put fires update, a restart
// with the same spec leaves INITIAL again without an update, and a deleted
// key is reported while the machine keeps its data.
func TestManagerMachine(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	put(t, kv, "spec", `{"serial":1}`)
	dataDir := t.TempDir()

	m, rec, stop := runManager(t, env, dataDir)
	rec.waitEvents(t, 1, map[string]any{"_type": agent.TransitionEventType, "transition": "to_manage"})
	rev2 := put(t, kv, "spec", `{"serial":2}`)
	rec.waitEvents(t, 1, map[string]any{"_type": agent.TransitionEventType, "transition": "update"})
	rec.waitEvents(t, 1, map[string]any{"name": "specification", "state": StateChanged, "revision": rev2, "outcome": "success"})
	if m.State() != "MANAGE" {
		t.Errorf("State() = %q, want MANAGE", m.State())
	}
	stop()

	// Restart with the same spec: INITIAL is left, nothing is updated.
	m, rec, _ = runManager(t, env, dataDir)
	rec.waitEvents(t, 1, map[string]any{"_type": agent.TransitionEventType, "transition": "to_manage"})
	rev3 := put(t, kv, "spec", `{"serial":3}`)
	rec.waitEvents(t, 1, map[string]any{"name": "specification", "state": StateChanged, "revision": rev3})
	// One update transition, for revision 3 only. It may follow the state
	// event: the machine paces transitions that come fast.
	rec.waitEvents(t, 1, map[string]any{"_type": agent.TransitionEventType, "transition": "update"})
	st := rec.find(map[string]any{"name": "specification", "revision": rev3})[0]
	for k, v := range map[string]any{"bucket": "MACHINES", "key": "spec", "mode": "watch", "data_key": "spec", "type": "kv", "machine": "kvmanager"} {
		if st[k] != v {
			t.Errorf("state event data[%q] = %v, want %v", k, st[k], v)
		}
	}

	if err := kv.Delete(t.Context(), "spec"); err != nil {
		t.Fatal(err)
	}
	rec.waitEvents(t, 1, map[string]any{"name": "specification", "state": StateDeleted, "outcome": "report"})
	store, err := agent.OpenDataStore(dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := store.Get("spec")
	if diff := cmp.Diff(map[string]any{"serial": 3.0}, got); diff != "" {
		t.Errorf("machine data spec after the delete mismatch (-want +got):\n%s", diff)
	}
	if m.State() != "MANAGE" {
		t.Errorf("State() after the delete = %q, want MANAGE", m.State())
	}
}
