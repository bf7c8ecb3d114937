package web_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/web"
)

// testFleet is a real embedded NATS server with the spec and status
// buckets, an operator key, and documents written as agents write them.
type testFleet struct {
	t      testing.TB
	nc     *nats.Conn
	js     jetstream.JetStream
	specKV jetstream.KeyValue
	status jetstream.KeyValue
	priv   ed25519.PrivateKey
	keyID  string
	op     *packer.Opened // the live spec, as Inspect reads it
}

func newTestFleet(t testing.TB) *testFleet {
	t.Helper()
	srv := natstest.RunJetStream(t)
	f := &testFleet{t: t, nc: natstest.Connect(t, srv)}
	var err error
	if f.js, err = jetstream.New(f.nc); err != nil {
		t.Fatal(err)
	}
	if f.specKV, err = f.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES", History: 5}); err != nil {
		t.Fatal(err)
	}
	if f.status, err = f.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: nodestatus.Bucket, History: 1, MaxValueSize: nodestatus.MaxDocumentSize}); err != nil {
		t.Fatal(err)
	}
	var pub ed25519.PublicKey
	if pub, f.priv, err = packer.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.keyID = packer.KeyID(pub)
	return f
}

// putSpec signs a v2 spec with serial and entries and makes it the live
// one.
func (f *testFleet) putSpec(serial uint64, entries ...spec.Machine) *packer.Opened {
	f.t.Helper()
	s := &spec.Spec{Serial: serial, IssuedAt: time.Now().UTC().Truncate(time.Second), Expires: time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second), Machines: entries}
	env, err := packer.Seal(packer.FormatV2, s, f.priv)
	if err != nil {
		f.t.Fatal(err)
	}
	f.putEnvelope(env)
	return f.op
}

// putEnvelope makes env the live spec.
func (f *testFleet) putEnvelope(env []byte) {
	f.t.Helper()
	if _, err := f.specKV.Put(context.Background(), "machines", env); err != nil {
		f.t.Fatal(err)
	}
	op, err := packer.Inspect(env)
	if err != nil {
		f.t.Fatal(err)
	}
	f.op = op
}

// putDoc writes d under its identity's key.
func (f *testFleet) putDoc(d nodestatus.Document) {
	f.t.Helper()
	data, err := json.Marshal(d)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.status.Put(context.Background(), nodestatus.Key(d.Identity), data); err != nil {
		f.t.Fatal(err)
	}
}

// doc is the document of an agent that runs the live spec, trusts the
// fleet's key and runs machines, updated now.
func (f *testFleet) doc(identity string, now time.Time, machines ...nodestatus.Machine) nodestatus.Document {
	if machines == nil {
		machines = []nodestatus.Machine{}
	}
	return nodestatus.Document{
		Version: nodestatus.DocumentVersion, Identity: identity, AgentVersion: "dev", StartedAt: now.Add(-time.Hour), UpdatedAt: now, Heartbeat: "30s",
		Trust:    &nodestatus.Trust{KeyIDs: []string{f.keyID}, Threshold: 1},
		Applied:  &nodestatus.Applied{Serial: f.op.Spec.Serial, Format: "v2", Digest: f.op.Digest, AcceptedAt: now.Add(-time.Minute)},
		Seen:     &nodestatus.Seen{Serial: f.op.Spec.Serial, Format: "v2", Digest: f.op.Digest, Outcome: nodestatus.SeenApplied, At: now.Add(-time.Minute)},
		Entries:  []nodestatus.Entry{},
		Machines: machines, NATS: natsbox.ConnState{Connected: true, URL: "nats://127.0.0.1:4222"},
	}
}

// sum is a checksum made from s.
func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// entry is a spec entry for machine name at version.
func entry(name, version string) spec.Machine {
	return spec.Machine{Name: name, Source: "https://repo.example.net/" + name + "-" + version + ".tar.gz", Checksum: sum(name + version), VerifyChecksum: sum("sums " + name + version)}
}

// halted builds a fleet of n nodes (node-0001…) where web 2.0.0 rolls out
// over 1.0.0 in waves 1, 10%, 100% and the node of wave 1 rolled it back,
// so the rollout halted; db runs everywhere, and fails on the last node.
// It returns the identities, the wave-1 node and the failing one.
func (f *testFleet) halted(n int, now time.Time) (ids []string, first, failing string) {
	f.t.Helper()
	web1, web2, db := entry("web", "1.0.0"), entry("web", "2.0.0"), entry("db", "5.1.0")
	web2.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(30 * time.Second)}
	web2.Rollout = &spec.Rollout{Waves: []string{"1", "10%", "100%"}, Pause: spec.Duration(5 * time.Minute)}
	f.putSpec(7, web2, db)
	ids = make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%04d.example.net", i+1)
	}
	policy, err := rollout.NewPolicy(web2.Rollout)
	if err != nil {
		f.t.Fatal(err)
	}
	first = rollout.Assign(ids, "web", web2.Checksum, policy.Waves)[0][0]
	failing = ids[n-1]
	if failing == first {
		failing = ids[0]
	}
	unhealthy := "version 2.0.0 (" + web2.Checksum[:12] + ") unhealthy: not ready within 30s"
	halt := "held: rollout halted at wave 1 (node " + first + ": " + unhealthy + ")"
	for _, id := range ids {
		webM := nodestatus.Machine{Name: "web", Version: "1.0.0", State: "ready", Path: "/var/lib/mms/machines/web", Checksum: web1.Checksum, LastOutcome: "unchanged"}
		dbM := nodestatus.Machine{Name: "db", Version: "5.1.0", State: "serving", Path: "/var/lib/mms/machines/db", Checksum: db.Checksum, LastOutcome: "unchanged"}
		webE := nodestatus.Entry{Name: "web", Outcome: "held", Reason: halt, Version: "1.0.0", Checksum: web2.Checksum, Installed: web1.Checksum}
		dbE := nodestatus.Entry{Name: "db", Outcome: "unchanged", Version: "5.1.0", Checksum: db.Checksum, Installed: db.Checksum}
		if id == first {
			webE = nodestatus.Entry{Name: "web", Outcome: "rolled_back", Reason: unhealthy, Version: "1.0.0", Checksum: web2.Checksum, Installed: web1.Checksum, Health: "rolled_back"}
			webM.LastOutcome = "rolled_back"
		}
		if id == failing {
			dbE = nodestatus.Entry{Name: "db", Outcome: "failed", Reason: "fetch https://repo.example.net/db-5.1.0.tar.gz: 404 Not Found", Checksum: db.Checksum}
			dbM = nodestatus.Machine{Name: "db", LastOutcome: "failed", LastError: "fetch https://repo.example.net/db-5.1.0.tar.gz: 404 Not Found"}
		}
		mgr := nodestatus.Machine{Name: "mms_manager", Version: "dev", State: "MANAGE", CompiledIn: true, LastOutcome: "loaded"}
		d := f.doc(id, now, webM, dbM, mgr)
		d.Entries = []nodestatus.Entry{webE, dbE}
		f.putDoc(d)
	}
	return ids, first, failing
}

// publishEvent publishes a transition event of machine on identity at t
// on the events subjects.
func (f *testFleet) publishEvent(identity, machine, from, to string, at time.Time) {
	f.t.Helper()
	ev := event.New()
	ev.SetID(fmt.Sprint(at.UnixNano()))
	ev.SetType(agent.TransitionEventType)
	ev.SetSource(agent.EventSource)
	ev.SetSubject(identity)
	ev.SetTime(at)
	data := map[string]any{"identity": identity, "machine": machine, "transition": "go", "from_state": from, "to_state": to, "protocol": "io.choria.machine.v1.transition"}
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		f.t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.nc.Publish(agent.TransitionSubject, b); err != nil {
		f.t.Fatal(err)
	}
	if err := f.nc.Flush(); err != nil {
		f.t.Fatal(err)
	}
}

// serve runs a web.Server for the fleet (cfg's NATS fields filled in)
// until the test ends and returns its URL.
func (f *testFleet) serve(cfg web.Config) string {
	f.t.Helper()
	cfg.Conn, cfg.JS = f.nc, f.js
	cfg.MinInterval = min(cfg.MinInterval, 50*time.Millisecond)
	if cfg.MinInterval == 0 {
		cfg.MinInterval = 50 * time.Millisecond
	}
	s := web.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	hs.Start()
	f.t.Cleanup(func() {
		cancel()
		hs.Close()
		<-done
	})
	return hs.URL
}

// getJSON gets url and decodes its JSON answer into v, failing the test
// unless the status is want.
func getJSON(t testing.TB, url string, want int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %s, want %d: %s", url, resp.Status, want, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

// sse reads server-sent events from one response.
type sse struct {
	resp *http.Response
	r    *bufio.Reader
}

// sseEvent is one server-sent event.
type sseEvent struct {
	kind, data string
}

// openSSE opens a stream at url; it closes when the test ends.
func openSSE(t testing.TB, url string) *sse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s = %s (%s), want 200 text/event-stream", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	return &sse{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next reads the next event (comments skipped), failing the test after
// 30s.
func (s *sse) next(t testing.TB) sseEvent {
	t.Helper()
	type result struct {
		ev  sseEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var ev sseEvent
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				ch <- result{err: err}
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && ev.kind != "":
				ch <- result{ev: ev}
				return
			case strings.HasPrefix(line, "event: "):
				ev.kind = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read the stream: %v", r.err)
		}
		return r.ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event on the stream within 30s")
	}
	return sseEvent{}
}

// view is the part of /api/view these tests read.
type view struct {
	Error  string       `json:"error"`
	Counts fleet.Counts `json:"counts"`
	Spec   struct {
		State  string `json:"state"`
		Serial uint64 `json:"serial"`
		Line   string `json:"line"`
	} `json:"spec"`
	Nodes []struct {
		Node     json.RawMessage `json:"node"`
		Applied  string          `json:"applied"`
		Seen     string          `json:"seen"`
		Machines string          `json:"machines"`
		Age      string          `json:"age"`
		Problem  bool            `json:"problem"`
	} `json:"nodes"`
	Rollouts []struct {
		Rollout  json.RawMessage `json:"rollout"`
		Headline string          `json:"headline"`
		Versions string          `json:"versions"`
		Policy   string          `json:"policy"`
		Status   string          `json:"status"`
		Pause    float64         `json:"pause_seconds"`
	} `json:"rollouts"`
	SpecDetail json.RawMessage `json:"spec_detail"`
}
