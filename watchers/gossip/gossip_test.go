package gossipwatcher

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent/agenttest"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/internal/proptest"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []proptest.Case{
	{Name: "subject and payload", Props: `{"subject":"services.web","payload":"up","ttl_seconds":30}`},
	{Name: "templates", Props: `{"subject":"nodes.{{ .Identity }}","payload":"{{ lookup \"facts.os.family\" \"\" }}"}`},
	// The registration of Choria's gossip_test.go (v0.30.2): its IP key is ip.
	{Name: "registration", Props: `{"registration":{"cluster":"lon","service":"ginkgo","protocol":"http","ip":"192.168.1.1","port":8080,"priority":1,"annotations":{"test":"annotation"}}}`},
	{Name: "registration with prefix", Props: `{"registration":{"cluster":"c1","service":"web","protocol":"http","ip":"::1","port":80,"prefix":"reg.x"}}`},
	{Name: "registration with address", Props: `{"registration":{"cluster":"c1","service":"web","protocol":"http","address":"10.0.0.1","port":80}}`},
	{Name: "address and ip agree", Props: `{"registration":{"cluster":"c1","service":"web","protocol":"http","ip":"10.0.0.1","address":"10.0.0.1","port":80}}`},
	{Name: "address and ip disagree", Props: `{"registration":{"cluster":"c1","service":"web","protocol":"http","ip":"10.0.0.1","address":"10.0.0.2","port":80}}`,
		Err: `properties: registration.address: "10.0.0.2" disagrees with registration.ip "10.0.0.1": they are one setting; give ip, Choria's key`},
	{Name: "no ip", Props: `{"registration":{"cluster":"c1","service":"web","protocol":"http","port":80}}`,
		Err: `properties: registration.ip: required: the service's IP address (Choria's key; mms also reads it as address)`},
	{Name: "nothing", Props: `{}`, Err: "properties: subject: required (or registration)\npayload: required (or registration)"},
	{Name: "wildcard subject", Props: `{"subject":"a.>","payload":"x"}`, Err: `properties: subject: "a.>" is not a subject to publish to: want dot-separated tokens without blanks or wildcards`},
	{Name: "empty token", Props: `{"subject":"a..b","payload":"x"}`, Err: `properties: subject: "a..b" is not a subject to publish to: want dot-separated tokens without blanks or wildcards`},
	{Name: "bad template", Props: `{"subject":"{{ .Nope","payload":"x"}`, Err: `properties: subject: template "{{ .Nope": template: property:1: unclosed action`},
	{Name: "negative ttl", Props: `{"subject":"a","payload":"x","ttl_seconds":-1}`, Err: "properties: ttl_seconds: -1 is negative"},
	{Name: "registration and subject", Props: `{"subject":"a","registration":{"cluster":"c","service":"s","protocol":"p","ip":"10.0.0.1","port":1}}`, Err: "properties: subject: cannot be set with registration"},
	{Name: "bad registration", Props: `{"registration":{"cluster":"1c","protocol":"http","ip":"web1","port":0}}`,
		Err: "properties: registration.cluster: \"1c\" must match ^[a-zA-Z][a-zA-Z0-9_-]*$\nregistration.service: required\nregistration.ip: \"web1\" is not an IP address\nregistration.port: 0 is not a port number (1-65535)"},
	{Name: "typo", Props: `{"subjct":"a","payload":"x"}`, Err: `properties: json: unknown field "subjct"`},
}

func TestValidate(t *testing.T) { proptest.Build(t, "gossip", validateTests) }

// FuzzDecodeProperties: never a panic; an accepted config has a
// registration or both a subject and a payload.
func FuzzDecodeProperties(f *testing.F) {
	proptest.Fuzz(f, "gossip", validateTests, func(t *testing.T, b []byte, w watchers.Watcher) {
		gw := w.(*Watcher)
		if gw.Registration == nil && (gw.Subject == "" || gw.Payload == "") || gw.TTLSeconds < 0 {
			t.Fatalf("Build(%q) accepted %+v", b, gw)
		}
	})
}

// connected returns watcher dependencies on a fresh server and a second
// connection to watch what is published.
func connected(t *testing.T) (watchers.Deps, *nats.Conn) {
	t.Helper()
	s := natstest.RunJetStream(t)
	d := watchertest.Deps(t)
	d.Conn = natstest.Connect(t, s)
	return d, natstest.Connect(t, s)
}

func TestPublish(t *testing.T) {
	d, sub := connected(t)
	msgs := make(chan *nats.Msg, 8)
	if _, err := sub.ChanSubscribe("nodes.>", msgs); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	w := watchertest.BuildWith(t, d, "gossip", `{"subject":"nodes.{{ .Identity }}","payload":"{\"os\":\"{{ .Facts.os.family }}\"}","ttl_seconds":30}`).(*Watcher)

	w.StateChanged(true)
	res, err := w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Report || res.Quiet {
		t.Fatalf("first Check() = %+v, %v; want a published report", res, err)
	}
	st := res.State.(State)
	if st.Subject != "nodes.node.example.net" || st.Payload != `{"os":"linux"}` || st.Published < time.Now().Add(-time.Minute).Unix() {
		t.Errorf("state = %+v", st)
	}
	m := <-msgs
	if m.Subject != "nodes.node.example.net" || string(m.Data) != `{"os":"linux"}` || m.Header.Get("Nats-TTL") != "30s" || m.Header.Get("Nats-TTLSeconds") != "30s" {
		t.Errorf("published %s %q headers %v", m.Subject, m.Data, m.Header)
	}

	// Later publishes only update the announced state...
	if res, err := w.Check(t.Context()); err != nil || !res.Quiet {
		t.Errorf("second Check() = %+v, %v; want quiet", res, err)
	}
	<-msgs
	// ...until gossip stops and starts again.
	w.StateChanged(false)
	w.StateChanged(true)
	if res, err := w.Check(t.Context()); err != nil || res.Quiet {
		t.Errorf("Check() after a restart = %+v, %v; want published", res, err)
	}
}

// TestRegistration publishes Choria's registration JSON (the IP as
// address) whichever key machine.yaml gave it as: Choria's ip or mms's
// earlier address (with a warning naming ip).
func TestRegistration(t *testing.T) {
	tests := []struct {
		name, ipKey string
		warnings    []string
	}{
		{name: "ip", ipKey: "ip"},
		{name: "address", ipKey: "address", warnings: []string{"registration.address: mms's earlier name for registration.ip, the key Choria reads (it ignores address): write ip: 10.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, sub := connected(t)
			js, err := jetstream.New(sub)
			if err != nil {
				t.Fatal(err)
			}
			kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "CHORIA_SERVICES"})
			if err != nil {
				t.Fatal(err)
			}
			props := `{"registration":{"cluster":"c1","service":"web","protocol":"http","` + tt.ipKey + `":"10.0.0.1","port":80,"priority":5}}`
			if _, warnings, err := watchers.Decode("gossip", []byte(props)); err != nil || !slices.Equal(warnings, tt.warnings) {
				t.Errorf("Decode(%s) = %q, %v; want warnings %q", props, warnings, err, tt.warnings)
			}
			w := watchertest.BuildWith(t, d, "gossip", props)
			if _, err := w.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			key := "c1.http.web." + watchers.InstanceID(d.Identity, d.Machine)
			agenttest.Eventually(t, func() error {
				e, err := kv.Get(t.Context(), key)
				if err != nil {
					return err
				}
				if want := `{"cluster":"c1","service":"web","protocol":"http","address":"10.0.0.1","port":80,"priority":5}`; string(e.Value()) != want {
					return fmt.Errorf("CHORIA_SERVICES %s = %s, want %s", key, e.Value(), want)
				}
				return nil
			})
		})
	}
}

func TestNoConnection(t *testing.T) {
	w := watchertest.Build(t, "gossip", `{"subject":"a","payload":"b"}`)
	if _, err := w.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "no NATS connection") {
		t.Errorf("Check() without NATS = %v, want a no NATS connection error", err)
	}
}

func TestRenderedSubjectChecked(t *testing.T) {
	d := watchertest.Deps(t)
	d.Identity = "bad id"
	_, err := watchertest.New(d, "gossip", `{"subject":"nodes.{{ .Identity }}","payload":"x"}`)
	if want := `provision: subject: template "nodes.{{ .Identity }}": "nodes.bad id" is not a subject to publish to: want dot-separated tokens without blanks or wildcards`; proptest.ErrString(err) != want {
		t.Errorf("New() = %v, want %s", err, want)
	}
}

// TestGossipMachine runs a Choria gossip machine on a node connected to
// NATS: it gossips only while the machine is up.
func TestGossipMachine(t *testing.T) {
	yaml, err := os.ReadFile(filepath.Join("..", "..", "machine", "testdata", "choria", "gossip.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := natstest.RunJetStream(t)
	sub := natstest.Connect(t, s)
	msgs := make(chan *nats.Msg, 64)
	if _, err := sub.ChanSubscribe("registry.>", msgs); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	m, rec := agenttest.Start(t, string(yaml), agenttest.Options{
		Conn: natstest.Connect(t, s), Facts: func() map[string]any { return map[string]any{"hostname": "web1"} },
	})
	m1 := <-msgs
	if m1.Subject != "registry.web.up" || string(m1.Data) != "web1 is up" {
		t.Errorf("gossip = %s %q", m1.Subject, m1.Data)
	}
	typ := agenttest.StateEventType("gossip")
	agenttest.Eventually(t, func() error {
		ev := rec.Find(typ, map[string]any{"previous_subject": "registry.web.up", "previous_payload": "web1 is up"})
		if len(ev) != 1 {
			return fmt.Errorf("gossip state events = %d, want 1", len(ev))
		}
		return nil
	})
	// Down: the watcher stops; up again: gossip starts again and is
	// reported again.
	if err := m.Transition(t.Context(), "down"); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, func() error {
		if st := m.Status(); st.Watchers[0].Active {
			return fmt.Errorf("gossip watcher active in state %s", st.State)
		}
		return nil
	})
	if err := m.Transition(t.Context(), "up"); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, func() error {
		if n := len(rec.Find(typ, map[string]any{"outcome": "report"})); n != 2 {
			return fmt.Errorf("gossip state events = %d, want 2 (one per start)", n)
		}
		return nil
	})
}
