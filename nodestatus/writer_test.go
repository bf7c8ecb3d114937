package nodestatus

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
)

func TestPlan(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const hb, minGap, retry = 30 * time.Second, time.Second, 5 * time.Second
	tests := []struct {
		name          string
		p             plan
		now           time.Time
		wantNext      time.Time
		wantHeartbeat bool
	}{
		{"never written: now", plan{}, t0, time.Time{}, true},
		{"idle: next heartbeat", plan{lastAttempt: t0, lastWrite: t0}, t0.Add(time.Second), t0.Add(hb), false},
		{"heartbeat due", plan{lastAttempt: t0, lastWrite: t0}, t0.Add(hb), t0.Add(hb), true},
		{"change right after a write waits the min interval", plan{lastAttempt: t0, lastWrite: t0, dirty: true}, t0, t0.Add(minGap), false},
		{"change long after a write: at once", plan{lastAttempt: t0, lastWrite: t0, dirty: true}, t0.Add(10 * time.Second), t0.Add(minGap), false},
		{"failed: retry later", plan{lastAttempt: t0, dirty: true, failed: true}, t0, t0.Add(retry), true},
		{"failed heartbeat: retry, not spin", plan{lastAttempt: t0.Add(hb), lastWrite: t0, failed: true, dirty: true}, t0.Add(hb), t0.Add(hb + retry), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.next(hb, minGap, retry); !got.Equal(tt.wantNext) {
				t.Errorf("%+v.next() = %v, want %v", tt.p, got, tt.wantNext)
			}
			if got := tt.p.heartbeatDue(tt.now, hb); got != tt.wantHeartbeat {
				t.Errorf("%+v.heartbeatDue(%v) = %v, want %v", tt.p, tt.now, got, tt.wantHeartbeat)
			}
		})
	}
}

// statusKV starts a server with the status bucket and returns it.
func statusKV(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), testBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// runWriter runs w until the returned stop is called (or the test ends).
func runWriter(t *testing.T, w *Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// waitDoc polls the document at key until ok accepts it.
func waitDoc(t *testing.T, kv jetstream.KeyValue, key string, ok func(*Document, uint64) error) *Document {
	t.Helper()
	var doc *Document
	natstest.Eventually(t, 10*time.Second, func() error {
		e, err := kv.Get(context.Background(), key)
		if err != nil {
			return err
		}
		d, err := ParseDocument(e.Value())
		if err != nil {
			return err
		}
		doc = d
		return ok(d, e.Revision())
	})
	return doc
}

func revision(t *testing.T, kv jetstream.KeyValue, key string) uint64 {
	t.Helper()
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return e.Revision()
}

func TestWriterWritesOnChange(t *testing.T) {
	js, kv := statusKV(t)
	rec := NewRecorder()
	states := []agent.MachineStatus{{Name: "web", Version: "1.0.0", State: "RUN", Path: "/m/web"}}
	trust, err := manager.NewTrust(manager.TrustConfig{Keys: []ed25519.PublicKey{make(ed25519.PublicKey, ed25519.PublicKeySize)}, AllowV1: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(WriterConfig{
		Identity: "web 1", Version: "v9", Recorder: rec, JetStream: js, Trust: trust,
		States: func() []agent.MachineStatus { return states }, Heartbeat: time.Hour, MinInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runWriter(t, w)
	first := waitDoc(t, kv, w.Key(), func(*Document, uint64) error { return nil })
	if first.Version != DocumentVersion || first.Identity != "web 1" || first.AgentVersion != "v9" || first.Heartbeat != "1h0m0s" || len(first.Machines) != 1 || first.Machines[0].State != "RUN" {
		t.Errorf("first document = %+v", first)
	}
	if first.Applied != nil || first.Seen != nil {
		t.Errorf("first document before the manager reported: applied %+v, seen %+v; want null", first.Applied, first.Seen)
	}
	wantTrust := &Trust{KeyIDs: trust.KeyIDs(), Threshold: 1, AllowV1: true}
	if diff := cmp.Diff(wantTrust, first.Trust); diff != "" || len(wantTrust.KeyIDs) != 1 {
		t.Errorf("document trust (-want +got):\n%s", diff)
	}
	rec.ReportPass(manager.PassReport{Serial: 42, Format: "v2", Applied: manager.AppliedSpec{Serial: 42, Format: "v2"},
		Machines: []manager.MachineResult{{Name: "web", Outcome: manager.EntryInstalled, Checksum: "abc"}}})
	doc := waitDoc(t, kv, w.Key(), func(d *Document, _ uint64) error {
		if d.AppliedSerial() != 42 {
			return fmt.Errorf("serial %d", d.AppliedSerial())
		}
		return nil
	})
	if doc.Machines[0].Checksum != "abc" || doc.Machines[0].LastOutcome != "installed" {
		t.Errorf("machine after the manager's report = %+v, want its checksum and outcome", doc.Machines[0])
	}
	wantEntries := []Entry{{Name: "web", Outcome: "installed", Version: "1.0.0", Checksum: "abc"}}
	if diff := cmp.Diff(wantEntries, doc.Entries); diff != "" {
		t.Errorf("entries after the manager's report (-want +got):\n%s", diff)
	}
}

// Changes that come faster than MinInterval are coalesced: with an hour
// between writes, a hundred events after the first write produce no write
// until the final one.
func TestWriterCoalescesChanges(t *testing.T) {
	js, kv := statusKV(t)
	rec := NewRecorder()
	w, err := NewWriter(WriterConfig{Identity: "node1", Recorder: rec, JetStream: js, Heartbeat: time.Hour, MinInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWriter(t, w)
	waitDoc(t, kv, w.Key(), func(*Document, uint64) error { return nil })
	for i := range 100 {
		rec.ReportPass(manager.PassReport{Serial: uint64(i + 1), Applied: manager.AppliedSpec{Serial: uint64(i + 1)}})
	}
	stop()
	e, err := kv.Get(t.Context(), w.Key())
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDocument(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision() != 2 || d.AppliedSerial() != 100 || d.StoppedAt.IsZero() {
		t.Errorf("after 100 changes and stop: revision %d, serial %d, stopped_at %v; want revision 2 (first + final write), serial 100, stopped_at set",
			e.Revision(), d.AppliedSerial(), d.StoppedAt)
	}
}

func TestWriterHeartbeat(t *testing.T) {
	js, kv := statusKV(t)
	w, err := NewWriter(WriterConfig{Identity: "node1", Recorder: NewRecorder(), JetStream: js, Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runWriter(t, w)
	first := waitDoc(t, kv, w.Key(), func(*Document, uint64) error { return nil })
	waitDoc(t, kv, w.Key(), func(d *Document, rev uint64) error {
		if rev < 3 || !d.UpdatedAt.After(first.UpdatedAt) {
			return fmt.Errorf("revision %d updated_at %v", rev, d.UpdatedAt)
		}
		return nil
	})
}

// While NATS is down the writer does not try; after the reconnect hook
// touches the recorder it writes.
func TestWriterWaitsForNATS(t *testing.T) {
	js, kv := statusKV(t)
	var connected atomic.Bool
	rec := NewRecorder()
	var logs bytes.Buffer
	w, err := NewWriter(WriterConfig{
		Identity: "node1", Recorder: rec, JetStream: js, Heartbeat: time.Hour, RetryInterval: time.Millisecond,
		NATS: func() natsbox.ConnState { return natsbox.ConnState{Connected: connected.Load()} },
		Log:  slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWriter(t, w)
	// Let the writer run a few times while disconnected: each pass through
	// the loop is an attempt it must skip.
	for range 5 {
		rec.Touch()
	}
	if _, err := kv.Get(t.Context(), w.Key()); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Get while disconnected = %v, want %v", err, jetstream.ErrKeyNotFound)
	}
	connected.Store(true)
	rec.Touch()
	d := waitDoc(t, kv, w.Key(), func(d *Document, _ uint64) error { return nil })
	if !d.NATS.Connected {
		t.Errorf("document NATS = %+v, want connected", d.NATS)
	}
	stop()
	if rev := revision(t, kv, w.Key()); rev < 2 {
		t.Errorf("revision after stop = %d, want a final write", rev)
	}
}

// A missing bucket is an error in the document and the log, with a hint;
// once the bucket exists the writer writes.
func TestWriterMissingBucket(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	var logs syncWriter
	w, err := NewWriter(WriterConfig{
		Identity: "node1", Recorder: rec, JetStream: js, Heartbeat: time.Hour, RetryInterval: 5 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runWriter(t, w)
	natstest.Eventually(t, 10*time.Second, func() error {
		if !bytes.Contains(logs.bytes(), []byte("creates it with 'mms init'")) {
			return errors.New("no hint logged yet")
		}
		return nil
	})
	kv, err := js.CreateKeyValue(t.Context(), testBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	d := waitDoc(t, kv, w.Key(), func(*Document, uint64) error { return nil })
	if want := "bucket MACHINES_STATUS does not exist"; !bytes.Contains([]byte(d.LastError), []byte(want)) {
		t.Errorf("document last_error = %q, want it to contain %q", d.LastError, want)
	}
}

func TestNewWriterRejectsBadConfig(t *testing.T) {
	_, err := NewWriter(WriterConfig{Heartbeat: -time.Second})
	if err == nil {
		t.Fatal("NewWriter(empty) = nil error")
	}
	for _, want := range []string{"identity is empty", "recorder is required", "jetstream is required", "heartbeat -1s is negative"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("NewWriter() error = %q, want it to contain %q", err, want)
		}
	}
}

// syncWriter is a buffer safe for a logger writing while the test reads.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		s.w = &bytes.Buffer{}
	}
	return s.w.Write(p)
}

func (s *syncWriter) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	return bytes.Clone(s.w.Bytes())
}

// An agent needs only the permissions the package doc lists: publish to
// its own key and bind the bucket.
func TestWriterLeastPrivilege(t *testing.T) {
	opts := natstest.Options(t.TempDir())
	key := Key("node1")
	opts.Users = []*server.User{
		{Username: "admin", Password: "admin"},
		{Username: "node1", Password: "node1", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				"$KV." + Bucket + "." + key,
				"$JS.API.STREAM.INFO.KV_" + Bucket,
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}},
	}
	srv := natstest.Run(t, opts)
	admin, err := jetstream.New(natstest.Connect(t, srv, nats.UserInfo("admin", "admin")))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := admin.CreateKeyValue(t.Context(), testBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(natstest.Connect(t, srv, nats.UserInfo("node1", "node1")))
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(WriterConfig{Identity: "node1", Recorder: NewRecorder(), JetStream: js, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runWriter(t, w)
	waitDoc(t, kv, key, func(d *Document, _ uint64) error { return nil })
}

// TestWriterBuildsOnlyOnChange: the document is built when a change is
// signalled, never for a heartbeat: a heartbeat writes the last document
// built again, with its time and the connection's health current. An idle
// node with a hundred machines used to build it (every machine's status)
// for every heartbeat and every routine event.
func TestWriterBuildsOnlyOnChange(t *testing.T) {
	js, kv := statusKV(t)
	rec := NewRecorder()
	var builds atomic.Int64
	var reconnects atomic.Int64
	w, err := NewWriter(WriterConfig{
		Identity: "node1", Recorder: rec, JetStream: js, Heartbeat: 20 * time.Millisecond, MinInterval: time.Millisecond,
		States: func() []agent.MachineStatus {
			builds.Add(1)
			return []agent.MachineStatus{{Name: "web", Version: "1.0.0", State: "RUN"}}
		},
		NATS: func() natsbox.ConnState {
			return natsbox.ConnState{Connected: true, Reconnects: int(reconnects.Load())}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runWriter(t, w)
	first := waitDoc(t, kv, w.Key(), func(*Document, uint64) error { return nil })
	reconnects.Store(3)
	// Several heartbeats: newer times, the connection's count, one build.
	waitDoc(t, kv, w.Key(), func(d *Document, rev uint64) error {
		if rev < 4 || !d.UpdatedAt.After(first.UpdatedAt) || d.NATS.Reconnects != 3 || len(d.Machines) != 1 {
			return fmt.Errorf("revision %d updated_at %v reconnects %d machines %d", rev, d.UpdatedAt, d.NATS.Reconnects, len(d.Machines))
		}
		return nil
	})
	if n := builds.Load(); n != 1 {
		t.Errorf("the document was built %d times for one change and heartbeats, want once", n)
	}
	rec.Touch()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := builds.Load(); n != 2 {
			return fmt.Errorf("%d builds after a change, want 2", n)
		}
		return nil
	})
}
