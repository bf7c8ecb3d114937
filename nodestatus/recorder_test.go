package nodestatus

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
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	applied := manager.AppliedSpec{Serial: 7, Digest: "d7", Format: "v2", AcceptedAt: at}
	web := manager.MachineResult{Name: "web", Outcome: manager.EntryInstalled, Checksum: "aa"}
	db := manager.MachineResult{Name: "db", Outcome: manager.EntryFailed, Reason: "checksum mismatch"}
	accepted := manager.PassReport{Serial: 7, Digest: "d7", Format: "v2", Applied: applied, Stale: true, Machines: []manager.MachineResult{web, db},
		Err: errors.New(`machine "db": checksum mismatch`)}
	wantApplied := &Applied{Serial: 7, Digest: "d7", Format: "v2", AcceptedAt: at, Stale: true}
	tests := []struct {
		name        string
		reports     []manager.PassReport
		wantApplied *Applied
		wantSeen    *Seen
		wantResults []result
	}{
		{
			name:        "an applied spec",
			reports:     []manager.PassReport{accepted},
			wantApplied: wantApplied,
			wantSeen:    &Seen{Serial: 7, Digest: "d7", Format: "v2", Outcome: SeenApplied, Reason: `machine "db": checksum mismatch`},
			wantResults: []result{web, db},
		},
		{
			// An older spec is ignored: the document says so and keeps
			// showing the spec the node runs, not the one it refused.
			name: "an older spec after it",
			reports: []manager.PassReport{accepted, {Serial: 4, Digest: "d4", Format: "v2", Applied: applied, Rejected: manager.RejectReplayed,
				Err: errors.New("open spec: ignored older spec (serial 4 < 7)")}},
			wantApplied: wantApplied,
			wantSeen:    &Seen{Serial: 4, Digest: "d4", Format: "v2", Outcome: SeenIgnoredOlder, Reason: "open spec: ignored older spec (serial 4 < 7)"},
			wantResults: []result{web, db},
		},
		{
			name: "a v1 spec after a v2 one is legacy-refused",
			reports: []manager.PassReport{accepted, {Digest: "v1d", Format: "v1", Applied: applied, Rejected: manager.RejectReplayed,
				Err: errors.New("open spec: ignored older spec (serial 0 < 7; v1 specs have no serial)")}},
			wantApplied: wantApplied,
			wantSeen:    &Seen{Digest: "v1d", Format: "v1", Outcome: SeenLegacyRefused, Reason: "open spec: ignored older spec (serial 0 < 7; v1 specs have no serial)"},
			wantResults: []result{web, db},
		},
		{
			name:        "no spec ever applied",
			reports:     []manager.PassReport{{Serial: 9, Format: "v2", Rejected: manager.RejectUnknownKey, Err: errors.New("signed by no trusted key")}},
			wantSeen:    &Seen{Serial: 9, Format: "v2", Outcome: SeenUntrusted, Reason: "signed by no trusted key"},
			wantResults: nil,
		},
		{
			name:        "results are replaced, not merged",
			reports:     []manager.PassReport{accepted, {Serial: 8, Digest: "d8", Applied: manager.AppliedSpec{Serial: 8, Digest: "d8"}}},
			wantApplied: &Applied{Serial: 8, Digest: "d8"},
			wantSeen:    &Seen{Serial: 8, Digest: "d8", Outcome: SeenApplied},
			wantResults: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			for _, rep := range tt.reports {
				r.ReportPass(rep)
			}
			got := r.snapshot()
			if got.seen == nil || got.seen.At.IsZero() {
				t.Fatalf("seen = %+v after a report, want it with its time", got.seen)
			}
			if diff := cmp.Diff(tt.wantApplied, got.applied); diff != "" {
				t.Errorf("applied (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSeen, got.seen, cmpopts.IgnoreFields(Seen{}, "At")); diff != "" {
				t.Errorf("seen (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantResults, got.results, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
}

// A pass under way that reports the spec it applies makes it the seen
// spec, "applying", which is no problem of the node, until the pass
// reports.
func TestRecorderApplying(t *testing.T) {
	r := NewRecorder()
	r.ReportPass(manager.PassReport{Rejected: manager.RejectMissing, Err: errors.New("no spec received yet")})
	r.ReportApplying(manager.AppliedSpec{Serial: 12, Digest: "d12", Format: "v2"})
	got := r.snapshot()
	if diff := cmp.Diff(&Seen{Serial: 12, Digest: "d12", Format: "v2", Outcome: SeenApplying}, got.seen, cmpopts.IgnoreFields(Seen{}, "At")); diff != "" || got.seen.At.IsZero() {
		t.Errorf("seen while applying (-want +got):\n%s", diff)
	}
	if got.seen.Refused() {
		t.Errorf("a spec being applied counts as refused")
	}
	d := Document{Seen: got.seen}
	if p := d.Problems(); len(p) != 0 {
		t.Errorf("problems while applying = %q, want none", p)
	}
	r.ReportPass(manager.PassReport{Serial: 12, Digest: "d12", Format: "v2", Applied: manager.AppliedSpec{Serial: 12, Digest: "d12", Format: "v2"}})
	if s := r.snapshot().seen; s.Outcome != SeenApplied {
		t.Errorf("seen after the pass = %+v, want applied", s)
	}
}

// A download shows as downloading with its bytes until the pass reports;
// progress reported on every read signals one change a second at most.
func TestRecorderProgress(t *testing.T) {
	r := NewRecorder()
	r.ReportPass(manager.PassReport{Serial: 1, Applied: manager.AppliedSpec{Serial: 1},
		Machines: []manager.MachineResult{{Name: "web", Outcome: manager.EntryInstalled, Checksum: "c1"}}})
	<-r.Changed()
	states := []agent.MachineStatus{{Name: "web", Version: "1.0.0", State: "RUN"}}

	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.now = func() time.Time { return clock }

	r.ReportProgress("web", 10, 100)
	select {
	case <-r.Changed():
	default:
		t.Fatal("the first progress report of a download did not signal a change")
	}
	for i := range 50 {
		clock = clock.Add(20 * time.Millisecond)
		r.ReportProgress("web", int64(11+i), 100)
		if i == 48 {
			select {
			case <-r.Changed():
				t.Fatal("progress reports within a second of the first signalled a change")
			default:
			}
		}
	}
	select {
	case <-r.Changed():
	default:
		t.Fatal("progress a second after the last signal did not signal a change")
	}
	r.ReportProgress("db", 5, 0) // an entry the last pass did not have, size unknown
	<-r.Changed()
	entries := entryList(states, r.snapshot())
	want := []Entry{
		{Name: "web", Outcome: EntryDownloading, Version: "1.0.0", Checksum: "c1", Download: &Download{Done: 60, Total: 100}},
		{Name: "db", Outcome: EntryDownloading, Download: &Download{Done: 5}},
	}
	if diff := cmp.Diff(want, entries, cmpopts.IgnoreFields(Download{}, "StartedAt", "UpdatedAt")); diff != "" {
		t.Errorf("entries while downloading (-want +got):\n%s", diff)
	}
	if d := entries[0].Download; !d.StartedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || !d.UpdatedAt.Equal(d.StartedAt.Add(time.Second)) {
		t.Errorf("download times = %v .. %v, want its first and its last report", d.StartedAt, d.UpdatedAt)
	}

	r.ReportProgress("web", 100, 100)
	select {
	case <-r.Changed():
	default:
		t.Fatal("the end of a download did not signal a change")
	}

	r.ReportPass(manager.PassReport{Serial: 2, Applied: manager.AppliedSpec{Serial: 2},
		Machines: []manager.MachineResult{{Name: "web", Outcome: manager.EntryUpdated, Checksum: "c2"}, {Name: "db", Outcome: manager.EntryFailed, Reason: "install: sha256 mismatch"}}})
	want = []Entry{
		{Name: "web", Outcome: "updated", Version: "1.0.0", Checksum: "c2"},
		{Name: "db", Outcome: "failed", Reason: "install: sha256 mismatch"},
	}
	if diff := cmp.Diff(want, entryList(states, r.snapshot())); diff != "" {
		t.Errorf("entries after the pass (-want +got):\n%s", diff)
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
		results: []result{
			{Name: "web", Outcome: manager.EntryUpdated, Checksum: "c1"},
			{Name: "db", Outcome: manager.EntryFailed, Reason: "http 404", Checksum: "c2"},
			{Name: "cache", Outcome: manager.EntryRolledBack, Reason: "new version failed to load", Checksum: "c3"},
			{Name: "other", Outcome: manager.EntrySkipped, Reason: "match \"identity('^db')\" does not select this node", Match: "identity('^db')"},
			{Name: "old", Outcome: manager.EntryPurged},
			{Name: "failed", Outcome: manager.EntryFailed, Reason: "extract: unsafe entry"},
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
	wantEntries := []Entry{
		{Name: "web", Outcome: "updated", Version: "1.2.0", Checksum: "c1"},
		{Name: "db", Outcome: "failed", Reason: "http 404", Checksum: "c2"},
		{Name: "cache", Outcome: "rolled_back", Reason: "new version failed to load", Version: "1.0.0", Checksum: "c3"},
		{Name: "other", Outcome: "skipped", Reason: "match \"identity('^db')\" does not select this node", Match: "identity('^db')"},
		{Name: "old", Outcome: "purged"},
		{Name: "failed", Outcome: "failed", Reason: "extract: unsafe entry"},
	}
	if diff := cmp.Diff(wantEntries, entryList(states, rec)); diff != "" {
		t.Errorf("entryList (-want +got):\n%s", diff)
	}
}

// TestRecorderSignalsOnlyChanges: a watcher's routine state event (an exec
// check every 30 s of each of a hundred machines) changes nothing the
// document shows and signals nothing; a transition, a host event and an
// event with an error do.
func TestRecorderSignalsOnlyChanges(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
		want bool
	}{
		{"routine check", stateEvent(t, "exec", "web", "check", "success", nil), false},
		{"unchanged check", stateEvent(t, "file", "web", "conf", "unchanged", nil), false},
		{"check error", stateEvent(t, "exec", "web", "check", "error", map[string]any{"error": "exit status 2"}), true},
		{"host loaded", stateEvent(t, agent.HostWatcherType, "web", "host", agent.HostLoaded, nil), true},
		{"transition", machineEvent(t, "io.choria.machine.v1.transition", map[string]any{"machine": "web", "transition": "go", "from_state": "A", "to_state": "B"}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			r.Observe(tt.ev)
			select {
			case <-r.Changed():
				if !tt.want {
					t.Error("signalled a change")
				}
			default:
				if tt.want {
					t.Error("signalled no change")
				}
			}
		})
	}
}
