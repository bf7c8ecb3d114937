package agent

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/machine"
)

func TestStateEvent(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC)
	m := machineRef{identity: "n1", id: "id-1", name: "web", version: "1.0"}
	tests := []struct {
		name string
		rep  stateReport
		want map[string]any
		gone []string
	}{
		{
			name: "state fields merged, common fields win",
			rep: stateReport{eventType: "io.choria.machine.watcher.exec.v1.state", watcherType: "exec", watcher: "check", outcome: "success",
				state: map[string]any{"command": "./x", "machine": "spoof", "error": "stale", "announce": true}},
			want: map[string]any{
				"protocol": "io.choria.machine.watcher.exec.v1.state", "identity": "n1", "id": "id-1", "version": "1.0",
				"timestamp": float64(now.Unix()), "type": "exec", "machine": "web", "name": "check", "command": "./x",
				"outcome": "success", "time": "2026-01-02T03:04:05.678Z",
			},
			gone: []string{"error", "transition_error", "announce"},
		},
		{
			name: "errors and announce",
			rep: stateReport{eventType: "io.choria.machine.watcher.exec.v1.state", watcherType: "exec", watcher: "check", outcome: "error",
				err: errors.New("boom"), transErr: errors.New("invalid transition"), announce: true},
			want: map[string]any{"error": "boom", "transition_error": "invalid transition", "announce": true, "outcome": "error"},
		},
		{
			name: "nil state",
			rep:  stateReport{eventType: "io.choria.machine.watcher.timer.v1.state", watcherType: "timer", watcher: "t", outcome: "report"},
			want: map[string]any{"type": "timer", "name": "t"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := stateEvent(m, tt.rep, now)
			if err != nil {
				t.Fatal(err)
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("event does not validate: %v", err)
			}
			if ev.Type() != tt.rep.eventType || ev.Source() != EventSource || ev.Subject() != "n1" || !ev.Time().Equal(now) {
				t.Errorf("event envelope = %s/%s/%s/%v, want %s/%s/n1/%v", ev.Type(), ev.Source(), ev.Subject(), ev.Time(), tt.rep.eventType, EventSource, now)
			}
			d := data(t, ev)
			for k, v := range tt.want {
				if d[k] != v {
					t.Errorf("data[%q] = %v, want %v", k, d[k], v)
				}
			}
			for _, k := range tt.gone {
				if _, ok := d[k]; ok {
					t.Errorf("data has %q = %v, want it absent", k, d[k])
				}
			}
		})
	}
	// A serial above 2^53 keeps every digit (not rounded through float64).
	big, err := stateEvent(m, stateReport{eventType: "t", watcherType: "machines", watcher: "m", state: map[string]any{"serial": uint64(math.MaxUint64)}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(big.Data(), []byte(`"serial":18446744073709551615`)) {
		t.Errorf("event data = %s, want serial 18446744073709551615 exactly", big.Data())
	}
	if _, err := stateEvent(m, stateReport{watcherType: "x", state: []int{1}}, now); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("stateEvent(list state) = %v, want a not-a-JSON-object error", err)
	}
}

func TestEventInfoSummary(t *testing.T) {
	now := time.Now()
	tr, err := transitionEvent(machineRef{identity: "n1", id: "i", name: "web", version: "1"}, "go", "idle", "busy", now)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stateEvent(machineRef{identity: "n1", name: "web"}, stateReport{
		eventType: "io.choria.machine.watcher.exec.v1.state", watcherType: "exec", watcher: "check", outcome: "error",
		err: errors.New("exit 1"), transErr: errors.New("nope"),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	host, err := hostEvent("n1", "web", "2", "", "/m/web", HostLoadFailed, errors.New("bad yaml"), now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ev   event.Event
		want string
	}{
		{"transition", tr, "transition go idle -> busy"},
		{"state", st, "exec check error: exit 1 (transition: nope)"},
		{"host", host, "host web load_failed: bad yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseEvent(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Summary(); got != tt.want {
				t.Errorf("Summary() = %q, want %q", got, tt.want)
			}
			if info.Identity != "n1" || info.Machine != "web" {
				t.Errorf("ParseEvent() identity, machine = %q, %q, want n1, web", info.Identity, info.Machine)
			}
		})
	}
	other := event.New()
	other.SetType("com.example.other")
	_ = other.SetData(event.ApplicationJSON, map[string]any{})
	if _, err := ParseEvent(other); err == nil {
		t.Error("ParseEvent(foreign type) = nil error, want one")
	}
}

func TestRegisterMachineRejects(t *testing.T) {
	tests := []struct {
		name string
		def  *machine.Definition
	}{
		{"nil", nil},
		{"invalid", &machine.Definition{Name: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterMachine(%v) did not panic", tt.def)
				}
			}()
			RegisterMachine(tt.def)
		})
	}
	if n := len(RegisteredMachines()); n != 0 {
		t.Errorf("RegisteredMachines() = %d after rejected registrations, want 0", n)
	}
}

func TestRegisterMachineFactoryRejects(t *testing.T) {
	valid := func(Node) (*machine.Definition, error) { return nil, nil }
	tests := []struct {
		name    string
		machine string
		f       MachineFactory
		want    string
	}{
		{"bad name", "../x", valid, `compiled-in machine name "../x"`},
		{"nil factory", "ok", nil, `compiled-in machine "ok" registered with a nil factory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil || !strings.Contains(fmt.Sprint(p), tt.want) {
					t.Errorf("RegisterMachineFactory(%q) panic = %v, want %q", tt.machine, p, tt.want)
				}
			}()
			RegisterMachineFactory(tt.machine, tt.f)
		})
	}
	if n := len(RegisteredMachines()); n != 0 {
		t.Errorf("RegisteredMachines() = %d after rejected registrations, want 0", n)
	}
}

// bucketSetting is a typed node setting, as a plugin would define one.
type bucketSetting string

func TestNodeSettings(t *testing.T) {
	type other struct{ N int }
	n := WithSetting(Node{Identity: "n1"}, bucketSetting("A"))
	n2 := WithSetting(n, other{N: 2})
	n3 := WithSetting(n2, bucketSetting("B"))
	if b, ok := Setting[bucketSetting](n); !ok || b != "A" {
		t.Errorf("Setting[bucketSetting](n) = %q, %v; want A", b, ok)
	}
	if _, ok := Setting[other](n); ok {
		t.Error("Setting[other](n) found a value WithSetting added to a copy")
	}
	if o, ok := Setting[other](n3); !ok || o.N != 2 {
		t.Errorf("Setting[other](n3) = %+v, %v; want {2}", o, ok)
	}
	if b, _ := Setting[bucketSetting](n3); b != "B" {
		t.Errorf("Setting[bucketSetting](n3) = %q, want the replacement B", b)
	}
	if b, _ := Setting[bucketSetting](n2); b != "A" {
		t.Errorf("Setting[bucketSetting](n2) = %q after a later WithSetting, want A (copies do not share)", b)
	}
	if _, ok := Setting[string](n3); ok {
		t.Error("Setting[string] found a bucketSetting: settings are keyed by their exact type")
	}
}

func TestBuildMachinesFromNode(t *testing.T) {
	const yaml = `
name: %s
version: 1.0.0
initial_state: IDLE
transitions:
  - {name: go, from: [IDLE], destination: RUN}
watchers:
  - {name: w, type: probe, interval: 1m, state_match: [IDLE], properties: {key: factory}}
`
	factories := map[string]MachineFactory{
		"b-node": func(n Node) (*machine.Definition, error) {
			return machine.Parse(fmt.Appendf(nil, yaml, "b-node"))
		},
		"a-node": func(n Node) (*machine.Definition, error) {
			if b, _ := Setting[bucketSetting](n); b != "MACHINES" {
				return nil, fmt.Errorf("bucket %q", b)
			}
			return machine.Parse(fmt.Appendf(nil, yaml, "a-node"))
		},
	}
	node := WithSetting(Node{}, bucketSetting("MACHINES"))
	defs, err := buildMachines(factories, node)
	if err != nil {
		t.Fatalf("buildMachines() = %v", err)
	}
	if len(defs) != 2 || defs[0].Name != "a-node" || defs[1].Name != "b-node" {
		t.Fatalf("buildMachines() names = %v, want [a-node b-node]", defs)
	}
	if _, err := buildMachines(factories, Node{}); err == nil || !strings.Contains(err.Error(), `compiled-in machine "a-node": bucket ""`) {
		t.Errorf("buildMachines(empty node) = %v, want the factory's error", err)
	}
	factories["c-wrong"] = factories["b-node"]
	if _, err := buildMachines(factories, node); err == nil || !strings.Contains(err.Error(), "named otherwise") {
		t.Errorf("buildMachines(misnamed) = %v, want a name mismatch", err)
	}
}
