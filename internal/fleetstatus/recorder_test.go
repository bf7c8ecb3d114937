package fleetstatus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
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

func TestRecorderSpecFromReports(t *testing.T) {
	applied := manager.AppliedSpec{Serial: 7, Digest: "d7", Format: "v2", AcceptedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	web := manager.MachineResult{Name: "web", Outcome: manager.EntryInstalled, Checksum: "aa"}
	db := manager.MachineResult{Name: "db", Outcome: manager.EntryFailed, Reason: "checksum mismatch"}
	accepted := manager.PassReport{Serial: 7, Digest: "d7", Format: "v2", Applied: applied, Stale: true, Machines: []manager.MachineResult{web, db},
		Err: errors.New(`machine "db": checksum mismatch`)}
	tests := []struct {
		name        string
		reports     []manager.PassReport
		wantSpec    Spec
		wantResults map[string]result
	}{
		{
			name:        "an applied spec",
			reports:     []manager.PassReport{accepted},
			wantSpec:    Spec{Serial: 7, Digest: "d7", Format: "v2", AcceptedAt: applied.AcceptedAt, Stale: true, Error: `machine "db": checksum mismatch`, Seen: SeenSpec{Serial: 7, Digest: "d7", Outcome: SeenApplied}},
			wantResults: map[string]result{"web": web, "db": db},
		},
		{
			// An older spec is ignored: the document says so and keeps
			// showing the spec the node runs, not the one it refused.
			name: "an older spec after it",
			reports: []manager.PassReport{accepted, {Serial: 4, Digest: "d4", Format: "v2", Applied: applied, Rejected: manager.RejectReplayed,
				Err: errors.New("open spec: older spec ignored (serial 4 < 7)")}},
			wantSpec: Spec{Serial: 7, Digest: "d7", Format: "v2", AcceptedAt: applied.AcceptedAt, Stale: true, Error: "open spec: older spec ignored (serial 4 < 7)",
				Seen: SeenSpec{Serial: 4, Digest: "d4", Outcome: "replayed", Reason: "open spec: older spec ignored (serial 4 < 7)"}},
			wantResults: map[string]result{"web": web, "db": db},
		},
		{
			name:        "no spec ever applied",
			reports:     []manager.PassReport{{Serial: 9, Rejected: manager.RejectUnknownKey, Err: errors.New("signed by no trusted key")}},
			wantSpec:    Spec{Error: "signed by no trusted key", Seen: SeenSpec{Serial: 9, Outcome: "unknown_key", Reason: "signed by no trusted key"}},
			wantResults: map[string]result{},
		},
		{
			name:        "results are replaced, not merged",
			reports:     []manager.PassReport{accepted, {Serial: 8, Digest: "d8", Applied: manager.AppliedSpec{Serial: 8, Digest: "d8"}}},
			wantSpec:    Spec{Serial: 8, Digest: "d8", Seen: SeenSpec{Serial: 8, Digest: "d8", Outcome: SeenApplied}},
			wantResults: map[string]result{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			for _, rep := range tt.reports {
				r.ReportPass(rep)
			}
			got := r.snapshot()
			if got.spec.ReportedAt.IsZero() {
				t.Error("ReportedAt is zero after a report")
			}
			if diff := cmp.Diff(tt.wantSpec, got.spec, cmpopts.IgnoreFields(Spec{}, "ReportedAt")); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantResults, got.results); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
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
	ev := stateEvent(t, "exec", "web", "check", "error", map[string]any{"error": "exit status 2"})
	if err := p.Publish(t.Context(), agent.WatcherStateSubject("exec"), ev); !errors.Is(err, failing) {
		t.Errorf("Publish() = %v, want the next publisher's error", err)
	}
	if want := []string{"choria.machine.watcher.exec.state"}; !cmp.Equal(subjects, want) {
		t.Errorf("published to %v, want %v", subjects, want)
	}
	if got := r.snapshot().lastErr; got != "web exec check: exit status 2" {
		t.Errorf("recorded last error = %q, want the event's even though publishing failed", got)
	}
	if err := (Publisher{Recorder: r}).Publish(t.Context(), "x", ev); err != nil {
		t.Errorf("Publish() without Next = %v, want nil", err)
	}
}

func TestMachineList(t *testing.T) {
	rec := recorded{
		results: map[string]result{
			"web":    {Name: "web", Outcome: manager.EntryUpdated, Checksum: "c1"},
			"db":     {Name: "db", Outcome: manager.EntryFailed, Reason: "http 404", Checksum: "c2"},
			"cache":  {Name: "cache", Outcome: manager.EntryRolledBack, Reason: "new version failed to load", Checksum: "c3"},
			"other":  {Name: "other", Outcome: manager.EntrySkipped},
			"old":    {Name: "old", Outcome: manager.EntryPurged},
			"failed": {Name: "failed", Outcome: manager.EntryFailed, Reason: "extract: unsafe entry"},
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
