package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

func TestRegistered(t *testing.T) {
	info, ok := watchers.Lookup(Type)
	if !ok {
		t.Fatalf("watchers.Lookup(%q) found nothing", Type)
	}
	if info.Version != Version || info.EventType() != "io.choria.machine.watcher.heartbeat.v1.state" {
		t.Errorf("watchers.Lookup(%q) = version %q, event type %q; want %q, io.choria.machine.watcher.heartbeat.v1.state", Type, info.Version, info.EventType(), Version)
	}
	if info.DefaultInterval != watchers.Duration(time.Minute) || info.MinInterval != watchers.Duration(time.Second) {
		t.Errorf("watchers.Lookup(%q) intervals = default %v, min %v; want 1m, 1s", Type, info.DefaultInterval, info.MinInterval)
	}
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// build creates a heartbeat watcher through the agent's path (strict
// decoding, Validate, Provision) with a fake clock set before Provision.
func build(t *testing.T, properties string) (*Watcher, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	w, err := watchers.Build(Type, json.RawMessage(properties))
	if err != nil {
		t.Fatalf("watchers.Build(%q, %s): %v", Type, properties, err)
	}
	hb := w.(*Watcher)
	hb.now = c.now
	if err := hb.Provision(watchertest.Deps(t)); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return hb, c
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name       string
		properties string
		want       []watchers.Result // one per check, 30s apart
	}{
		{
			name:       "reports every beat",
			properties: `{"message":"hello"}`,
			want: []watchers.Result{
				{Outcome: watchers.Report, State: State{Beats: 1, UptimeSeconds: 0, Message: "hello"}},
				{Outcome: watchers.Report, State: State{Beats: 2, UptimeSeconds: 30, Message: "hello"}},
				{Outcome: watchers.Report, State: State{Beats: 3, UptimeSeconds: 60, Message: "hello"}},
			},
		},
		{
			name:       "succeeds every second beat",
			properties: `{"success_every":2}`,
			want: []watchers.Result{
				{Outcome: watchers.Report, State: State{Beats: 1, UptimeSeconds: 0}},
				{Outcome: watchers.Success, State: State{Beats: 2, UptimeSeconds: 30}},
				{Outcome: watchers.Report, State: State{Beats: 3, UptimeSeconds: 60}},
				{Outcome: watchers.Success, State: State{Beats: 4, UptimeSeconds: 90}},
			},
		},
		{
			name:       "no properties",
			properties: ``,
			want: []watchers.Result{
				{Outcome: watchers.Report, State: State{Beats: 1}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, c := build(t, tt.properties)
			for i, want := range tt.want {
				got, err := w.Check(t.Context())
				if err != nil {
					t.Fatalf("Check #%d: %v", i+1, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Check #%d mismatch (-want +got):\n%s", i+1, diff)
				}
				c.t = c.t.Add(30 * time.Second)
			}
		})
	}
}

func TestCheckCancelled(t *testing.T) {
	w, _ := build(t, `{}`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Check(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Check(cancelled) error = %v, want context.Canceled", err)
	}
	got, err := w.Check(t.Context())
	if err != nil || got.State.(State).Beats != 1 {
		t.Errorf("Check after a cancelled check = %+v, %v; want beat 1 (a cancelled check counts nothing)", got, err)
	}
}

// TestBuildThroughWatchertest builds the type the way the agent does, with
// the real dependencies of the test kit.
func TestBuildThroughWatchertest(t *testing.T) {
	w := watchertest.Build(t, Type, `{"message":"kit"}`)
	got, err := w.Check(t.Context())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if s := got.State.(State); got.Outcome != watchers.Report || s.Beats != 1 || s.Message != "kit" {
		t.Errorf("Check = %+v, want a report of beat 1 with message kit", got)
	}
	data, err := json.Marshal(got.State)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"beats", "uptime_seconds", "message"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("state event fields %s lack %q", data, k)
		}
	}
}

func TestInvalidProperties(t *testing.T) {
	long := `"` + strings.Repeat("x", MaxMessage+1) + `"`
	tests := []struct {
		name       string
		properties string
		want       string
	}{
		{"misspelt property", `{"mesage":"hi"}`, `properties: json: unknown field "mesage"`},
		{"wrong type", `{"success_every":"often"}`, `properties: json: cannot unmarshal string into Go struct field Watcher.success_every of type int`},
		{"long message", `{"message":` + long + `}`, `properties: message: 257 bytes is longer than 256`},
		{"every problem", `{"message":` + long + `,"success_every":-1}`, "properties: message: 257 bytes is longer than 256\nsuccess_every: -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watchers.Build(Type, json.RawMessage(tt.properties))
			if err == nil || err.Error() != tt.want {
				t.Errorf("watchers.Build(%q, %.40s…) error = %v, want %q", Type, tt.properties, err, tt.want)
			}
		})
	}
}
