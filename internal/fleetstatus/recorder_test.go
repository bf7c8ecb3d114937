package fleetstatus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/mms-io/mms/agent"
)

// machineEvent builds a machine event the way the agent does: a CloudEvent
// whose data carries the common fields plus data.
func machineEvent(t testing.TB, typ string, data map[string]any) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(uuid.NewString())
	ev.SetType(typ)
	ev.SetSource(agent.EventSource)
	ev.SetSubject("node1")
	ev.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	data["identity"] = "node1"
	data["protocol"] = typ
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return ev
}

func stateEvent(t testing.TB, watcherType, machine, name, outcome string, extra map[string]any) event.Event {
	data := map[string]any{"type": watcherType, "machine": machine, "name": name, "outcome": outcome}
	for k, v := range extra {
		data[k] = v
	}
	return machineEvent(t, "io.choria.machine.watcher."+watcherType+".v1.state", data)
}

func managerEvent(t testing.TB, outcome string, extra map[string]any) event.Event {
	return stateEvent(t, MachinesWatcherType, "mms_manager", "manage", outcome, extra)
}

func TestRecorderSpecFromMachinesEvents(t *testing.T) {
	results := []any{
		map[string]any{"name": "web", "outcome": "installed", "checksum": "aa"},
		map[string]any{"name": "db", "outcome": "failed", "reason": "checksum mismatch"},
		map[string]any{"outcome": "installed"}, // no name: dropped
		"not an object",
	}
	tests := []struct {
		name        string
		events      []map[string]any
		outcomes    []string
		wantSpec    Spec
		wantResults map[string]result
	}{
		{
			name:     "every field",
			events:   []map[string]any{{"serial": 7, "digest": "d1", "format": "v2", "stale": true, "results": results}},
			outcomes: []string{"success"},
			wantSpec: Spec{Serial: 7, Digest: "d1", Format: "v2", Stale: true},
			wantResults: map[string]result{
				"web": {Name: "web", Outcome: "installed", Checksum: "aa"},
				"db":  {Name: "db", Outcome: "failed", Reason: "checksum mismatch"},
			},
		},
		{
			name:        "missing fields keep what is known",
			events:      []map[string]any{{"serial": 7, "format": "v2", "results": results[:1]}, {"stale": true}},
			outcomes:    []string{"success", "report"},
			wantSpec:    Spec{Serial: 7, Format: "v2", Stale: true},
			wantResults: map[string]result{"web": {Name: "web", Outcome: "installed", Checksum: "aa"}},
		},
		{
			name:        "fields of the wrong type lose only themselves",
			events:      []map[string]any{{"serial": "12", "format": 1, "stale": "yes", "digest": 5, "results": "none"}},
			outcomes:    []string{"success"},
			wantSpec:    Spec{Serial: 12, Format: "v1"},
			wantResults: map[string]result{},
		},
		{
			name:        "results are replaced, not merged",
			events:      []map[string]any{{"results": results[:2]}, {"results": []any{}}},
			outcomes:    []string{"success", "success"},
			wantResults: map[string]result{},
		},
		{
			name:        "a failure's reason is the spec error",
			events:      []map[string]any{{"serial": 3, "reason": "signature by an untrusted key"}},
			outcomes:    []string{"failure"},
			wantSpec:    Spec{Serial: 3, Error: "signature by an untrusted key"},
			wantResults: map[string]result{},
		},
		{
			name:        "the check error is the spec error and clears on the next report",
			events:      []map[string]any{{"error": "kv get failed"}, {"serial": 4}},
			outcomes:    []string{"error", "success"},
			wantSpec:    Spec{Serial: 4},
			wantResults: map[string]result{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			for i, data := range tt.events {
				r.Observe(managerEvent(t, tt.outcomes[i], data))
			}
			got := r.snapshot()
			tt.wantSpec.ReportedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			if diff := cmp.Diff(tt.wantSpec, got.spec); diff != "" {
				t.Errorf("spec after %v (-want +got):\n%s", tt.events, diff)
			}
			if diff := cmp.Diff(tt.wantResults, got.results); diff != "" {
				t.Errorf("results after %v (-want +got):\n%s", tt.events, diff)
			}
		})
	}
}

func TestRecorderErrorsAndLoads(t *testing.T) {
	r := NewRecorder()
	r.Observe(stateEvent(t, "exec", "web", "check", "error", map[string]any{"error": "exit status 2"}))
	r.Observe(stateEvent(t, agent.HostWatcherType, "broken", "broken", agent.HostLoadFailed,
		map[string]any{"version": "1.0.0", "path": "/m/broken", "error": "line 3: unknown field"}))
	r.Observe(stateEvent(t, agent.HostWatcherType, "fixed", "fixed", agent.HostLoadFailed, map[string]any{"error": "bad"}))
	r.Observe(stateEvent(t, agent.HostWatcherType, "fixed", "fixed", agent.HostLoaded, nil))
	got := r.snapshot()
	// The last error stays after the machine loads: it is history, the
	// machine's own last_error is the current state.
	if want := "fixed host fixed: bad"; got.lastErr != want {
		t.Errorf("last error = %q, want %q", got.lastErr, want)
	}
	want := map[string]loadRecord{"broken": {version: "1.0.0", path: "/m/broken", err: "line 3: unknown field"}}
	if diff := cmp.Diff(want, got.loads, cmp.AllowUnexported(loadRecord{})); diff != "" {
		t.Errorf("loads (-want +got):\n%s", diff)
	}
	r.RecordError(errors.New("write status: timeout"))
	if got := r.snapshot().lastErr; got != "write status: timeout" {
		t.Errorf("last error after RecordError = %q", got)
	}
}

func TestRecorderSignalsChanges(t *testing.T) {
	r := NewRecorder()
	for range 3 { // coalesced, never blocking
		r.Observe(machineEvent(t, agent.TransitionEventType, map[string]any{"machine": "m", "transition": "go", "from_state": "a", "to_state": "b"}))
	}
	select {
	case <-r.Changed():
	default:
		t.Fatal("Observe did not signal a change")
	}
	select {
	case <-r.Changed():
		t.Fatal("three changes were not coalesced into one signal")
	default:
	}
}

// publisherFunc adapts a function to agent.Publisher.
type publisherFunc func(ctx context.Context, subject string, ev event.Event) error

func (f publisherFunc) Publish(ctx context.Context, subject string, ev event.Event) error {
	return f(ctx, subject, ev)
}

func TestPublisherPublishesAndRecords(t *testing.T) {
	r := NewRecorder()
	var subjects []string
	failing := errors.New("nats down")
	p := Publisher{Recorder: r, Next: publisherFunc(func(_ context.Context, subject string, _ event.Event) error {
		subjects = append(subjects, subject)
		return failing
	})}
	ev := managerEvent(t, "success", map[string]any{"serial": 9})
	if err := p.Publish(t.Context(), agent.WatcherStateSubject(MachinesWatcherType), ev); !errors.Is(err, failing) {
		t.Errorf("Publish() = %v, want the next publisher's error", err)
	}
	if want := []string{"choria.machine.watcher.machines.state"}; !cmp.Equal(subjects, want) {
		t.Errorf("published to %v, want %v", subjects, want)
	}
	if got := r.snapshot().spec.Serial; got != 9 {
		t.Errorf("recorded serial = %d, want 9 even though publishing failed", got)
	}
	if err := (Publisher{Recorder: r}).Publish(t.Context(), "x", ev); err != nil {
		t.Errorf("Publish() without Next = %v, want nil", err)
	}
}

func TestMachineList(t *testing.T) {
	rec := recorded{
		results: map[string]result{
			"web":    {Name: "web", Outcome: "updated", Checksum: "c1"},
			"db":     {Name: "db", Outcome: "failed", Reason: "http 404", Checksum: "c2"},
			"cache":  {Name: "cache", Outcome: "rolled_back", Reason: "new version failed to load", Checksum: "c3"},
			"other":  {Name: "other", Outcome: "skipped"},
			"old":    {Name: "old", Outcome: "purged"},
			"failed": {Name: "failed", Outcome: "failed", Reason: "extract: unsafe entry"},
		},
		loads: map[string]loadRecord{
			"broken": {version: "2.0.0", path: "/m/broken", err: "line 1: bad"},
			"cache":  {version: "1.1.0", path: "/m/cache", err: "unknown watcher type"},
		},
	}
	states := []agent.MachineStatus{
		{Name: "web", Version: "1.2.0", State: "RUN", Path: "/m/web", Watchers: []agent.WatcherStatus{{Name: "probe", LastError: "exit status 1"}, {Name: "ok"}}},
		{Name: "mms_manager", Version: "1.0.0", State: "MANAGE", Path: "/d/mms_manager", CompiledIn: true},
		{Name: "cache", Version: "1.0.0", State: "RUN", Path: "/m/cache"},
	}
	want := []Machine{
		{Name: "broken", Version: "2.0.0", Path: "/m/broken", LastOutcome: "load_failed", LastError: "line 1: bad"},
		{Name: "cache", Version: "1.0.0", State: "RUN", Path: "/m/cache", Checksum: "c3", LastOutcome: "rolled_back", LastError: "new version failed to load; load 1.1.0: unknown watcher type"},
		{Name: "db", Checksum: "c2", LastOutcome: "failed", LastError: "http 404"},
		{Name: "failed", LastOutcome: "failed", LastError: "extract: unsafe entry"},
		{Name: "mms_manager", Version: "1.0.0", State: "MANAGE", Path: "/d/mms_manager", CompiledIn: true, LastOutcome: "loaded"},
		{Name: "web", Version: "1.2.0", State: "RUN", Path: "/m/web", Checksum: "c1", LastOutcome: "updated", LastError: "probe: exit status 1"},
	}
	if diff := cmp.Diff(want, machineList(states, rec)); diff != "" {
		t.Errorf("machineList (-want +got):\n%s", diff)
	}
}

func FuzzParseMachinesState(f *testing.F) {
	for _, seed := range []string{
		`{"serial":7,"digest":"d","format":"v2","stale":true,"results":[{"name":"a","outcome":"installed","checksum":"x"}]}`,
		`{"serial":"12","format":1,"stale":"yes","results":"none"}`,
		`{"results":[{"name":1},{},null,"x"]}`,
		`{"serial":-1,"format":300}`,
		`[]`, `null`, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms := parseMachinesState(data)
		if ms == nil {
			return
		}
		for _, r := range ms.results {
			if r.Name == "" {
				t.Fatalf("parseMachinesState(%q) kept a result without a name", data)
			}
		}
	})
}
