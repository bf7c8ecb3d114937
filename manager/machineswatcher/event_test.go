package machineswatcher

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers/watchertest"
)

// eventRecorder is an agent.Publisher keeping every event's data.
type eventRecorder struct {
	mu     sync.Mutex
	events []map[string]any
}

func (r *eventRecorder) Publish(_ context.Context, _ string, ev event.Event) error {
	var data map[string]any
	if err := ev.DataAs(&data); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, data)
	return nil
}

func (r *eventRecorder) machinesEvents() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, e := range r.events {
		if e["type"] == "machines" {
			out = append(out, e)
		}
	}
	return out
}

// TestStateEventCarriesReason runs the watcher in a real agent machine
// and checks that the state event it publishes for a rejected spec says
// why, in words, and not only the rejection kind. (The agent owns the
// "error" field of state events and drops a watcher's value for it, so a
// reason there never reached anyone.)
func TestStateEventCarriesReason(t *testing.T) {
	strangerPub, stranger, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	trusted, _, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 3, IssuedAt: time.Now(), Machines: []spec.Machine{}}, stranger)
	if err != nil {
		t.Fatal(err)
	}
	store := watchertest.NewStore()
	if err := store.Put("spec", string(env)); err != nil {
		t.Fatal(err)
	}
	def := machine.MustParse(fmt.Appendf(nil, `name: manager
version: 1.0.0
initial_state: MANAGE
transitions:
  - name: pause
    from: [MANAGE]
    destination: PAUSED
watchers:
  - name: machines
    type: machines
    state_match: [MANAGE]
    properties:
      data_item: spec
      public_keys: [%s]
      state_dir: %s
`, packer.FormatPublicKey(trusted), t.TempDir()))
	rec := &eventRecorder{}
	m, err := agent.NewMachine(def, agent.MachineConfig{
		Dir: t.TempDir(), Identity: "node1", Publisher: rec, Data: store,
		Host: &fakeHost{dir: t.TempDir(), running: map[string]bool{}},
	})
	if err != nil {
		t.Fatalf("NewMachine() = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Machine.Run() = %v", err)
		}
	}()

	var got map[string]any
	natstest.Eventually(t, 10*time.Second, func() error {
		evs := rec.machinesEvents()
		if len(evs) == 0 {
			return fmt.Errorf("no machines state event yet")
		}
		got = evs[0]
		return nil
	})
	reason, _ := got["reason"].(string)
	keyID := packer.KeyID(strangerPub)
	if got["rejected"] != "unknown_key" || got["outcome"] != "failure" || !strings.Contains(reason, keyID) {
		t.Errorf("state event = %v, want rejected unknown_key with a reason naming key %s", got, keyID)
	}
}

// TestEventResultsBounded: the state event of a large spec lists the
// entries that changed or failed and counts the skipped and unchanged
// ones, so it stays far below NATS's 1 MiB (10,000 results are about
// 2 MB); a small spec's event lists every result. The event's text says
// how many were left out.
func TestEventResultsBounded(t *testing.T) {
	results := func(n int, outcome manager.EntryOutcome) []manager.MachineResult {
		out := make([]manager.MachineResult, n)
		for i := range out {
			out[i] = manager.MachineResult{Name: fmt.Sprintf("m%05d", i), Outcome: outcome, Match: "identity('^x')"}
		}
		return out
	}
	small := results(3, manager.EntrySkipped)
	if got, omitted := eventResults(small); len(got) != 3 || omitted != 0 {
		t.Errorf("eventResults(3 skipped) = %d results, %d omitted; want all", len(got), omitted)
	}
	large := append(results(9_998, manager.EntrySkipped), manager.MachineResult{Name: "web", Outcome: manager.EntryInstalled},
		manager.MachineResult{Name: "db", Outcome: manager.EntryFailed, Reason: "checksum mismatch"})
	got, omitted := eventResults(large)
	if len(got) != 2 || got[0].Name != "web" || got[1].Name != "db" || omitted != 9_998 {
		t.Fatalf("eventResults(10,000) = %+v, %d omitted; want web and db, 9,998 omitted", got, omitted)
	}
	if got, omitted := eventResults(results(3_000, manager.EntryInstalled)); len(got) != maxEventResults || omitted != 2_000 {
		t.Errorf("eventResults(3,000 installed) = %d results, %d omitted; want %d and 2,000", len(got), omitted, maxEventResults)
	}
	text := describe([]byte(`{"serial":5,"format":"v2","results":[{"name":"web","outcome":"installed"}],"omitted_results":9998}`))
	if !strings.HasSuffix(text, ": web installed, 9998 more skipped or unchanged") {
		t.Errorf("describe() = %q", text)
	}
}
