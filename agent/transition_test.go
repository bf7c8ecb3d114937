package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/machine"
)

// parseTransitionRequestCases is the table for ParseTransitionRequest;
// FuzzParseTransitionRequest is seeded from it.
var parseTransitionRequestCases = []struct {
	name, data, err string
}{
	{name: "every node", data: `{"machine":"mms_manager","transition":"enter_maintenance"}`},
	{name: "some nodes", data: `{"identity":"^web","machine":"app","transition":"go"}`},
	{name: "no machine", data: `{"transition":"go"}`, err: `transition request: machine: required`},
	{name: "bad machine", data: `{"machine":"../x","transition":"go"}`, err: `transition request: machine: invalid name "../x"`},
	{name: "no transition", data: `{"machine":"app"}`, err: "transition request: transition: required"},
	{name: "long transition", data: `{"machine":"app","transition":"` + strings.Repeat("x", 257) + `"}`, err: "transition request: transition: longer than 256 bytes"},
	{name: "bad identity", data: `{"identity":"(","machine":"app","transition":"go"}`, err: "transition request: identity: error parsing regexp: missing closing ): `(`"},
	{name: "unknown field", data: `{"machine":"app","transition":"go","force":true}`, err: `transition request: json: unknown field "force"`},
	{name: "trailing data", data: `{"machine":"app","transition":"go"} {}`, err: "transition request: data after the JSON object"},
	{name: "not JSON", data: `go`, err: "transition request: invalid character 'g' looking for beginning of value"},
	{name: "too big", data: `{"machine":"app","transition":"go","identity":"` + strings.Repeat("a", MaxTransitionMessage-48) + `"}`, err: "transition request: 16385 bytes, over the 16384 limit"},
}

func TestParseTransitionRequest(t *testing.T) {
	for _, tt := range parseTransitionRequestCases {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseTransitionRequest([]byte(tt.data))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.err == "" && got != "" || tt.err != "" && !strings.HasPrefix(got, tt.err) {
				t.Errorf("ParseTransitionRequest(%.80s) = %q, want %q", tt.data, got, tt.err)
			}
		})
	}
}

// FuzzParseTransitionRequest: never a panic; an accepted request names a
// valid machine and a transition, and its pattern compiles.
func FuzzParseTransitionRequest(f *testing.F) {
	for _, tt := range parseTransitionRequestCases {
		f.Add([]byte(tt.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, re, err := ParseTransitionRequest(data)
		if err != nil {
			return
		}
		if r.Check() != nil || r.Transition == "" || (r.Identity != "") != (re != nil) {
			t.Errorf("ParseTransitionRequest(%q) accepted %+v", data, r)
		}
	})
}

// parseTransitionReplyCases is the table for ParseTransitionReply.
var parseTransitionReplyCases = []struct {
	name, data, err string
}{
	{name: "transitioned", data: `{"identity":"web1","machine":"m","transition":"go","outcome":"transitioned","from":"idle","to":"busy"}`},
	{name: "newer field", data: `{"identity":"web1","outcome":"refused","error":"x","took":3}`},
	{name: "no identity", data: `{"outcome":"transitioned"}`, err: "transition reply: no identity"},
	{name: "unknown outcome", data: `{"identity":"web1","outcome":"maybe"}`, err: `transition reply: unknown outcome "maybe"`},
	{name: "not JSON", data: `[`, err: "transition reply: unexpected end of JSON input"},
	{name: "too big", data: `{"identity":"` + strings.Repeat("a", MaxTransitionMessage) + `"}`, err: "transition reply is 16399 bytes, over the 16384 limit"},
}

func TestParseTransitionReply(t *testing.T) {
	for _, tt := range parseTransitionReplyCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTransitionReply([]byte(tt.data))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.err {
				t.Errorf("ParseTransitionReply(%.80s) = %q, want %q", tt.data, got, tt.err)
			}
		})
	}
}

// FuzzParseTransitionReply: never a panic; an accepted reply has an
// identity and a known outcome.
func FuzzParseTransitionReply(f *testing.F) {
	for _, tt := range parseTransitionReplyCases {
		f.Add([]byte(tt.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseTransitionReply(data)
		if err == nil && (r.Identity == "" || r.Outcome != Transitioned && r.Outcome != TransitionRefused && r.Outcome != NoSuchMachine) {
			t.Errorf("ParseTransitionReply(%q) accepted %+v", data, r)
		}
	})
}

// TestServeTransitions runs two hosts on one NATS server, each answering
// transition requests: a request fires the transition on the nodes its
// pattern selects and each says what happened (transitioned, refused in
// the current state, no such machine).
func TestServeTransitions(t *testing.T) {
	srv := natstest.RunJetStream(t)
	client := natstest.Connect(t, srv)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	defer wg.Wait()
	defer cancel()
	hosts := map[string]*Host{}
	for _, id := range []string{"web1", "web2"} {
		root := t.TempDir()
		machines := filepath.Join(root, "machines")
		if err := os.MkdirAll(filepath.Join(machines, "app"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, key := newProbe(t)
		yaml := probeMachine("app", "1.0.0", key, "")
		if err := os.WriteFile(filepath.Join(machines, "app", machine.File), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := NewHost(HostConfig{
			MachinesDir: machines, DataDir: filepath.Join(root, "data"), Identity: id,
			Conn: natstest.Connect(t, srv), Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		hosts[id] = h
		wg.Go(func() { _ = h.Run(ctx) })
		wg.Go(func() {
			if err := h.ServeTransitions(ctx); err != nil {
				t.Errorf("ServeTransitions() = %v", err)
			}
		})
		natstest.Eventually(t, 10*time.Second, func() error {
			if _, ok := h.MachineState("app"); !ok {
				return fmt.Errorf("%s: app not running", id)
			}
			return nil
		})
	}
	// The subscriptions are made: a request every host answers.
	natstest.Eventually(t, 10*time.Second, func() error {
		got, err := RequestTransition(ctx, client, TransitionRequest{Machine: "none", Transition: "x"}, 100*time.Millisecond, []string{"web1", "web2"})
		if err != nil || len(got) != 2 {
			return fmt.Errorf("%d answers, %v", len(got), err)
		}
		return nil
	})

	steps := []struct {
		name string
		req  TransitionRequest
		want []TransitionReply
	}{
		{name: "web1 goes", req: TransitionRequest{Identity: "^web1$", Machine: "app", Transition: "go"}, want: []TransitionReply{
			{Identity: "web1", Machine: "app", Transition: "go", Outcome: Transitioned, From: "idle", To: "busy"},
		}},
		{name: "both go", req: TransitionRequest{Identity: "^web", Machine: "app", Transition: "go"}, want: []TransitionReply{
			{Identity: "web1", Machine: "app", Transition: "go", Outcome: TransitionRefused, From: "busy",
				Error: `machine "app": invalid transition: "go" cannot fire in state "busy", only in idle`},
			{Identity: "web2", Machine: "app", Transition: "go", Outcome: Transitioned, From: "idle", To: "busy"},
		}},
		{name: "unknown transition", req: TransitionRequest{Identity: "web2", Machine: "app", Transition: "fly"}, want: []TransitionReply{
			{Identity: "web2", Machine: "app", Transition: "fly", Outcome: TransitionRefused, From: "busy",
				Error: `machine "app": unknown transition "fly" in state "busy"`},
		}},
		{name: "no such machine", req: TransitionRequest{Identity: "web1", Machine: "db", Transition: "go"}, want: []TransitionReply{
			{Identity: "web1", Machine: "db", Transition: "go", Outcome: NoSuchMachine, Error: `no machine "db" runs on this node (it runs ["app"])`},
		}},
	}
	for _, st := range steps {
		var expect []string
		for _, r := range st.want {
			expect = append(expect, r.Identity)
		}
		got, err := RequestTransition(ctx, client, st.req, 10*time.Second, expect)
		if err != nil {
			t.Fatalf("%s: RequestTransition() = %v", st.name, err)
		}
		sortReplies(got)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: replies (-want +got):\n%s", st.name, diff)
		}
	}
	for id, state := range map[string]string{"web1": "busy", "web2": "busy"} {
		if st, _ := hosts[id].MachineState("app"); st.State != state {
			t.Errorf("%s: app in %s, want %s", id, st.State, state)
		}
	}
}

func sortReplies(rs []TransitionReply) {
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			if rs[j].Identity < rs[i].Identity {
				rs[i], rs[j] = rs[j], rs[i]
			}
		}
	}
}

// TestRequestTransitionDropsForeignAnswers: an answer from an identity
// the request does not select, a second answer for one identity and
// garbage are not results.
func TestRequestTransitionDropsForeignAnswers(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	node := natstest.Connect(t, srv)
	sub, err := node.Subscribe(TransitionRequestSubject, func(m *nats.Msg) {
		for _, r := range []string{
			`{"identity":"db1","outcome":"transitioned"}`,
			`garbage`,
			`{"identity":"web1","outcome":"refused","error":"first"}`,
			`{"identity":"web1","outcome":"transitioned"}`,
		} {
			_ = m.Respond([]byte(r))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := node.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := RequestTransition(t.Context(), nc, TransitionRequest{Identity: "^web", Machine: "app", Transition: "go"}, 500*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if want := `[{"identity":"web1","machine":"","transition":"","outcome":"refused","error":"first"}]`; string(b) != want {
		t.Errorf("RequestTransition() = %s, want %s", b, want)
	}
}
