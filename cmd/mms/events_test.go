package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/termtext"
)

// choriaEvent builds a machine event the way Choria and the agent do.
func choriaEvent(t testing.TB, typ, identity string, data map[string]any) []byte {
	t.Helper()
	ev := event.New()
	ev.SetID(uuid.NewString())
	ev.SetType(typ)
	ev.SetSource(agent.EventSource)
	ev.SetSubject(identity)
	ev.SetTime(time.Now())
	data["identity"] = identity
	data["protocol"] = typ
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func transitionMsg(t *testing.T, identity, machine string) []byte {
	return choriaEvent(t, agent.TransitionEventType, identity, map[string]any{
		"machine": machine, "transition": "go", "from_state": "idle", "to_state": "busy", "timestamp": time.Now().Unix(),
	})
}

func stateMsg(t *testing.T, identity, machine, typ, outcome string) []byte {
	return choriaEvent(t, "io.choria.machine.watcher."+typ+".v1.state", identity, map[string]any{
		"machine": machine, "type": typ, "name": "w1", "outcome": outcome, "timestamp": time.Now().Unix(),
	})
}

func TestEventsFollow(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	out, errOut, stop := runUntil(t, "events", "--server", srv.ClientURL())
	// The subscription starts in the background: publish until seen.
	natstest.Eventually(t, 10*time.Second, func() error {
		if err := nc.Publish(agent.TransitionSubject, transitionMsg(t, "web1", "alpha")); err != nil {
			return err
		}
		if !strings.Contains(out.String(), "web1 alpha transition go idle -> busy") {
			return context.DeadlineExceeded
		}
		return nil
	})
	if err := nc.Publish(agent.WatcherStateSubject("exec"), stateMsg(t, "web1", "alpha", "exec", "failure")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("choria.machine.watcher.exec.state", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "web1 alpha exec w1 failure")
	waitFor(t, errOut, "not a CloudEvent")
	if code := stop(); code != 0 {
		t.Errorf("events exit code = %d, want 0", code)
	}
}

func TestEventsFilters(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	tests := []struct {
		name  string
		flags []string
		keep  func(identity, machine, typ string) bool
	}{
		{"machine", []string{"--machine", "alpha"}, func(_, m, _ string) bool { return m == "alpha" }},
		{"identity", []string{"--identity", "db1"}, func(i, _, _ string) bool { return i == "db1" }},
		{"type", []string{"--type", "kv"}, func(_, _, ty string) bool { return ty == "kv" }},
		{"transitions", []string{"--type", "transition"}, func(_, _, ty string) bool { return ty == "transition" }},
	}
	type sample struct{ identity, machine, typ string }
	samples := []sample{{"web1", "alpha", "exec"}, {"db1", "beta", "kv"}, {"web1", "beta", "transition"}, {"db1", "alpha", "transition"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, stop := runUntil(t, append([]string{"events", "--json", "--server", srv.ClientURL()}, tt.flags...)...)
			marker := uuid.NewString()
			natstest.Eventually(t, 10*time.Second, func() error {
				for _, s := range samples {
					msg := transitionMsg(t, s.identity, s.machine)
					subject := agent.TransitionSubject
					if s.typ != "transition" {
						msg, subject = stateMsg(t, s.identity, s.machine, s.typ, marker), agent.WatcherStateSubject(s.typ)
					}
					if err := nc.Publish(subject, msg); err != nil {
						return err
					}
				}
				if out.String() == "" {
					return context.DeadlineExceeded
				}
				return nil
			})
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			// Every line printed must pass the filter.
			stop()
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				ev := event.New()
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("--json line %q is not a CloudEvent: %v", line, err)
				}
				info, err := agent.ParseEvent(ev)
				if err != nil {
					t.Fatal(err)
				}
				typ := info.WatcherType
				if info.Transition {
					typ = "transition"
				}
				if !tt.keep(info.Identity, info.Machine, typ) {
					t.Errorf("events %v printed %s/%s/%s, which the filter excludes", tt.flags, info.Identity, info.Machine, typ)
				}
			}
		})
	}
}

func TestEventsSince(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)

	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"events", "--server", srv.ClientURL(), "--since", "1h"}, strings.NewReader(""), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "the CHORIA_MACHINE stream does not exist") {
		t.Errorf("events --since without the stream = %d, %q; want 1 and a clear message", code, errOut.String())
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: agent.EventsStream, Subjects: []string{agent.EventsSubjects}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"old1", "old2"} {
		if _, err := js.Publish(t.Context(), agent.TransitionSubject, transitionMsg(t, "web1", m)); err != nil {
			t.Fatal(err)
		}
	}
	replayed, _, stop := runUntil(t, "events", "--server", srv.ClientURL(), "--since", "1h")
	waitFor(t, replayed, "web1 old1 transition", "web1 old2 transition")
	// New events follow the history.
	if err := nc.Publish(agent.WatcherStateSubject("kv"), stateMsg(t, "web2", "new", "kv", "report")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, replayed, "web2 new kv w1 report")
	stop()
	s := replayed.String()
	if strings.Index(s, "old1") > strings.Index(s, "old2") || strings.Index(s, "old2") > strings.Index(s, "web2 new") {
		t.Errorf("replay out of order:\n%s", s)
	}
}

// Each text line says why, in the words of the watcher type compiled into
// the binary (fleet.Event.Line through each type's describer): the exit code and first stderr line of a failed
// exec, the spec and the reason of a rejected spec, each entry that did
// something (a skip with its matcher, a failure with its error), old → new
// version of a reload, a kv or file watcher's reason.
func TestEventLineReasons(t *testing.T) {
	for _, tt := range eventLineTests(t) {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := fleet.DecodeEvent(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := ev.Line()
			// Drop the time: the line starts with it.
			if _, rest, _ := strings.Cut(got, " "); rest != tt.want {
				t.Errorf("Line() = %q, want %q after the time", rest, tt.want)
			}
		})
	}
}

// The line of an event anyone on NATS can publish, through every
// compiled-in watcher type's describer: whatever its data, one inert line.
func FuzzEventLine(f *testing.F) {
	for _, tt := range eventLineTests(f) {
		f.Add(tt.msg)
	}
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"x","type":"io.choria.machine.watcher.exec.v1.state","data":{"exit_code":"x","results":{}}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"x","type":"io.choria.machine.watcher.machines.v1.state","data":{"results":[{"name":"\u001b[2J","outcome":"skipped","match":"\u202e"}],"rejected":"replayed","format":"v1"}}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ev, err := fleet.DecodeEvent(msg)
		if err != nil {
			return
		}
		line := ev.Line()
		if strings.ContainsRune(line, '\n') {
			t.Fatalf("Line() = %q, more than one line", line)
		}
		if termtext.Escape(line) != line {
			t.Fatalf("Line() = %q, not inert", line)
		}
	})
}

// eventLineTests are events of every watcher type and the line each gives
// (after its time).
func eventLineTests(t testing.TB) []struct {
	name string
	msg  []byte
	want string
} {
	state := func(typ, outcome string, data map[string]any) []byte {
		data["machine"], data["type"], data["name"], data["outcome"] = "m", typ, "w", outcome
		return choriaEvent(t, "io.choria.machine.watcher."+typ+".v1.state", "web1", data)
	}
	return []struct {
		name string
		msg  []byte
		want string
	}{
		{"exec failure", state("exec", "failure", map[string]any{"exit_code": 2, "stderr": "\n  connection refused\nretrying\n", "command": "./check.sh"}),
			"web1 m exec w failure: exit 2: connection refused"},
		{"exec timeout", state("exec", "failure", map[string]any{"exit_code": -1, "error": `run "./check.sh": timed out after 1s`}),
			`web1 m exec w failure: run "./check.sh": timed out after 1s`},
		{"exec success says nothing more", state("exec", "success", map[string]any{"exit_code": 0}), "web1 m exec w success"},
		{"older spec ignored", state("machines", "report", map[string]any{"serial": 4000, "format": "v2", "rejected": "replayed",
			"reason": "open spec: ignored older spec (serial 4000 < 4242)", "results": []any{}}),
			"web1 m machines w report: serial 4000 ignored-older: open spec: ignored older spec (serial 4000 < 4242)"},
		{"untrusted spec", state("machines", "failure", map[string]any{"serial": 9, "format": "v2", "rejected": "unknown_key",
			"reason": "open spec: spec signed by no trusted key"}),
			"web1 m machines w failure: serial 9 untrusted: open spec: spec signed by no trusted key"},
		{"rejected spec known only by its digest", state("machines", "failure", map[string]any{"digest": "0123456789abcdef", "format": "v2", "rejected": "malformed",
			"reason": "open spec: payload: unexpected end of JSON input"}),
			"web1 m machines w failure: spec 0123456789ab malformed: open spec: payload: unexpected end of JSON input"},
		{"machines error names no spec", state("machines", "error", map[string]any{"error": "recover interrupted installs: permission denied"}),
			"web1 m machines w error: recover interrupted installs: permission denied"},
		{"v1 after v2", state("machines", "report", map[string]any{"digest": "0123456789abcdef", "format": "v1", "rejected": "replayed", "reason": "v1"}),
			"web1 m machines w report: v1 0123456789ab legacy-refused: v1"},
		{"entries", state("machines", "failure", map[string]any{"serial": 17, "format": "v2", "results": []map[string]any{
			{"name": "web", "outcome": "updated"},
			{"name": "db", "outcome": "skipped", "reason": `match "identity('^db')" does not select this node`, "match": "identity('^db')"},
			{"name": "cache", "outcome": "failed", "reason": "install: sha256 mismatch"},
			{"name": "same", "outcome": "unchanged"},
		}}), "web1 m machines w failure: serial 17: web updated, db skipped (match identity('^db')), cache failed (install: sha256 mismatch)"},
		{"upgrade", state("host", "loaded", map[string]any{"version": "2.0.0", "previous_version": "1.0.0"}), "web1 m host w loaded: 1.0.0 → 2.0.0"},
		{"first load", state("host", "loaded", map[string]any{"version": "1.0.0"}), "web1 m host w loaded: 1.0.0"},
		{"kv reason", state("kv", "report", map[string]any{"reason": "key deleted"}), "web1 m kv w report: key deleted"},
		{"archive tampered", state("archive", "success", map[string]any{"tampered": "web/check.sh"}), "web1 m archive w success: tampered: web/check.sh"},
	}
}
