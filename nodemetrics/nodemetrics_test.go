package nodemetrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/watchers"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, event.Event) error { return nil }

func TestMetricsAndHealth(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	nats := natsbox.ConnState{Connected: true, Reconnects: 2}
	states := []agent.MachineStatus{{Name: "mms_manager", Version: "1.0.0", State: "MANAGE"}, {Name: "web", Version: "2.0.0", State: "RUNNING"}}
	m := New(Config{
		States:  func() []agent.MachineStatus { return states },
		NATS:    func() natsbox.ConnState { return nats },
		Manager: "mms_manager", Now: func() time.Time { return now },
	})
	m.ReportPass(manager.PassReport{Serial: 42, Applied: manager.AppliedSpec{Serial: 42, Digest: "d42", Format: "v2"}, Machines: []manager.MachineResult{
		{Name: "web", Outcome: manager.EntryUpdated}, {Name: "db", Outcome: manager.EntryFailed, Reason: "404"},
	}, Err: errors.New(`machine "db": 404`)})
	m.ReportPass(manager.PassReport{Serial: 40, Applied: manager.AppliedSpec{Serial: 42, Digest: "d42", Format: "v2"}, Rejected: manager.RejectReplayed, Err: errors.New("older")})
	ev := event.New()
	ev.SetType(agent.TransitionEventType)
	ev.SetID("1")
	ev.SetSource(agent.EventSource)
	if err := ev.SetData(event.ApplicationJSON, map[string]any{"machine": "web", "transition": "go", "from_state": "a", "to_state": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Publisher(nopPublisher{}).Publish(t.Context(), agent.TransitionSubject, ev); err != nil {
		t.Fatal(err)
	}
	m.Sink("web", "disk").Set([]watchers.Sample{{Name: "disk_free", Value: 12}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"mms_spec_applied_serial 42",
		`mms_spec_applied_info{digest="d42",format="v2",serial="42"} 1`,
		`mms_spec_passes_total{outcome="applied"} 1`,
		`mms_spec_passes_total{outcome="replayed"} 1`,
		`mms_spec_entries{outcome="failed"} 1`,
		`mms_spec_entries{outcome="updated"} 1`,
		"mms_reconcile_errors_total 1",
		`mms_machine_transitions_total{machine="web"} 1`,
		`mms_machine_state{machine="web",state="RUNNING",version="2.0.0"} 1`,
		"mms_machines 2",
		"mms_nats_connected 1",
		"mms_nats_reconnects_total 2",
		"disk_free",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	health := func() (int, Health) {
		code, body := get(t, srv, "/healthz")
		var h Health
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("/healthz body %q: %v", body, err)
		}
		return code, h
	}
	if code, h := health(); code != http.StatusOK || !h.OK {
		t.Errorf("/healthz = %d %+v, want 200", code, h)
	}
	nats = natsbox.ConnState{DisconnectedAt: now.Add(-30 * time.Second), LastError: "connection refused"}
	if code, _ := health(); code != http.StatusOK {
		t.Errorf("/healthz while reconnecting for 30s = %d, want 200", code)
	}
	nats.DisconnectedAt = now.Add(-5 * time.Minute)
	if code, h := health(); code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(h.Problems, ";"), "nats: disconnected for 5m0s") {
		t.Errorf("/healthz after 5 minutes without NATS = %d %+v, want 503 naming NATS", code, h)
	}
	nats = natsbox.ConnState{Connected: true}
	states = states[1:]
	if code, h := health(); code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(h.Problems, ";"), "mms_manager is not running") {
		t.Errorf("/healthz without the manager = %d %+v, want 503 naming it", code, h)
	}
}
