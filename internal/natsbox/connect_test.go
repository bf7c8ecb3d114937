package natsbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// roundTrip checks that c can publish and receive on a subject.
func roundTrip(t *testing.T, c *Client) {
	t.Helper()
	sub, err := c.Conn.SubscribeSync("natsbox.ping")
	if err != nil {
		t.Fatalf("SubscribeSync() = %v", err)
	}
	defer sub.Unsubscribe()
	if err := c.Conn.Publish("natsbox.ping", []byte("hi")); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("NextMsg() = %v", err)
	}
}

func withUsers(users ...*server.User) func(*server.Options) {
	return func(o *server.Options) { o.Users = users }
}

func TestConnectContextUserPassword(t *testing.T) {
	s := startServer(t, ServerConfig{Configure: withUsers(&server.User{Username: "node1", Password: "s3cret"})})
	writeContext(t, "fleet", map[string]any{
		"description": "test fleet", "url": s.ClientURL(), "user": "node1", "password": "s3cret",
		"color_scheme": "dark", "some_future_field": true,
	})
	c := connect(t, ConnectConfig{Context: "fleet", Name: "node1", FailFast: true})
	roundTrip(t, c)
	st := c.Status.Snapshot()
	if !st.Connected || strings.Contains(st.URL, "s3cret") {
		t.Errorf("Snapshot() = %+v, want connected with no password in the URL", st)
	}

	t.Run("wrong password", func(t *testing.T) {
		writeContext(t, "fleet", map[string]any{"url": s.ClientURL(), "user": "node1", "password": "wrong"})
		_, err := Connect(t.Context(), ConnectConfig{Context: "fleet", FailFast: true})
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Errorf("Connect(wrong password) = %v, want an Authorization Violation", err)
		}
	})
	t.Run("flags override context", func(t *testing.T) {
		dead, _ := natstest.DeadURL(t)
		writeContext(t, "fleet", map[string]any{"url": dead, "user": "node1", "password": "s3cret"})
		c := connect(t, ConnectConfig{Context: "fleet", Servers: []string{s.ClientURL()}, FailFast: true})
		roundTrip(t, c)
	})
}

func TestConnectMissingContext(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	want, err := ContextPath("nope")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Connect(t.Context(), ConnectConfig{Context: "nope"})
	if !errors.Is(err, ErrContextNotFound) || !strings.Contains(err.Error(), want) {
		t.Errorf("Connect(missing context) = %v, want ErrContextNotFound naming %s", err, want)
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	url, stop, start := restartable(t)

	var logs syncbuf.Buffer
	c := connect(t, ConnectConfig{Servers: []string{url}, FailFast: true, Log: logs.Logger(slog.LevelInfo)})
	js, err := c.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"})
	if err != nil {
		t.Fatalf("CreateKeyValue() = %v", err)
	}
	if _, err := kv.Put(t.Context(), "spec", []byte("v1")); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	// The hook sees the reconnect count at the time it runs.
	var hookSaw atomic.Int64
	hookSaw.Store(-1)
	c.Status.OnReconnect(func() { hookSaw.Store(int64(c.Status.Snapshot().Reconnects)) })
	var removed atomic.Bool
	remove := c.Status.OnReconnect(func() { removed.Store(true) })
	remove()

	stop()
	natstest.Eventually(t, 10*time.Second, func() error {
		if c.Status.Snapshot().Connected {
			return errors.New("still connected")
		}
		return nil
	})
	start()

	natstest.Eventually(t, 20*time.Second, func() error {
		if got := hookSaw.Load(); got != 1 {
			return fmt.Errorf("reconnect hook saw Reconnects = %d, want 1", got)
		}
		return nil
	})
	if removed.Load() {
		t.Errorf("removed hook ran")
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		e, err := kv.Get(t.Context(), "spec")
		if err != nil {
			return err
		}
		if string(e.Value()) != "v1" {
			return fmt.Errorf("Get(spec) = %q, want v1", e.Value())
		}
		return nil
	})
	st := c.Status.Snapshot()
	if !st.Connected || st.Reconnects != 1 || st.Disconnects != 1 || st.DisconnectedAt.IsZero() {
		t.Errorf("Snapshot() = %+v, want connected after 1 disconnect and 1 reconnect", st)
	}
	for _, want := range []string{"nats disconnected", "nats reconnected"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("client log = %q, want %q", logs.String(), want)
		}
	}
}

func TestRetryOnFailedConnect(t *testing.T) {
	url, p := natstest.DeadURL(t)
	c := connect(t, ConnectConfig{Servers: []string{url}})
	if st := c.Status.Snapshot(); st.Connected {
		t.Fatalf("Snapshot().Connected = true before any server runs")
	}
	var hookRan atomic.Bool
	c.Status.OnReconnect(func() { hookRan.Store(true) })

	startServer(t, ServerConfig{Port: p})

	natstest.Eventually(t, 20*time.Second, func() error {
		if !c.Status.Snapshot().Connected {
			return errors.New("not connected yet")
		}
		if !hookRan.Load() {
			return errors.New("hook has not run for the first connection")
		}
		return nil
	})
	roundTrip(t, c)
	if st := c.Status.Snapshot(); st.Reconnects != 0 {
		t.Errorf("Snapshot().Reconnects = %d after a delayed first connect, want 0", st.Reconnects)
	}
}

func TestFailFastNoServer(t *testing.T) {
	url, _ := natstest.DeadURL(t)
	_, err := Connect(t.Context(), ConnectConfig{Servers: []string{url}, FailFast: true})
	if !errors.Is(err, nats.ErrNoServers) || !strings.Contains(err.Error(), url) {
		t.Errorf("Connect(FailFast, no server) = %v, want nats.ErrNoServers naming %s", err, url)
	}
}

// TestCloseWaitsForClosedCallback checks that nothing is logged after
// Close returns, even when the connect context ended first (the callback
// runs on a nats.go goroutine; callers write to the same stderr).
func TestCloseWaitsForClosedCallback(t *testing.T) {
	srv := natstest.RunJetStream(t)
	for i := range 20 {
		var logs syncbuf.Buffer
		ctx, cancel := context.WithCancel(t.Context())
		c, err := Connect(ctx, ConnectConfig{Servers: []string{srv.ClientURL()}, Log: logs.Logger(slog.LevelInfo)})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		c.Close()
		if got := logs.String(); !strings.Contains(got, `msg="nats connection closed"`) {
			t.Fatalf("run %d: Close returned before the closed callback logged; log so far:\n%s", i, got)
		}
	}
}

// statusAtLog is a slog handler that, for each record, notes what the
// client's Status said at the moment the line was written.
type statusAtLog struct {
	slog.Handler
	client *atomic.Pointer[Client]
	mu     *sync.Mutex
	seen   map[string]ConnState
}

func (h statusAtLog) Handle(ctx context.Context, r slog.Record) error {
	if c := h.client.Load(); c != nil {
		h.mu.Lock()
		h.seen[r.Message] = c.Status.Snapshot()
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

// TestLogLineBeforeStatus checks that a connection event is logged before
// Status shows it, so whoever sees the change in Status (the status
// document, a test polling it) finds the log line already written.
func TestLogLineBeforeStatus(t *testing.T) {
	url, stop, start := restartable(t)

	var (
		client atomic.Pointer[Client]
		mu     sync.Mutex
		logs   syncbuf.Buffer
	)
	h := statusAtLog{Handler: slog.NewTextHandler(&logs, nil), client: &client, mu: &mu, seen: map[string]ConnState{}}
	c := connect(t, ConnectConfig{Servers: []string{url}, FailFast: true, Log: slog.New(h)})
	client.Store(c)

	stop()
	start()
	natstest.Eventually(t, 20*time.Second, func() error {
		if st := c.Status.Snapshot(); st.Reconnects != 1 {
			return fmt.Errorf("Snapshot().Reconnects = %d, want 1", st.Reconnects)
		}
		return nil
	})

	mu.Lock()
	defer mu.Unlock()
	if st, ok := h.seen["nats disconnected"]; !ok || st.Disconnects != 0 || !st.Connected {
		t.Errorf("Status when \"nats disconnected\" was logged = %+v (logged %v), want still connected, 0 disconnects", st, ok)
	}
	if st, ok := h.seen["nats reconnected"]; !ok || st.Reconnects != 0 || st.Connected {
		t.Errorf("Status when \"nats reconnected\" was logged = %+v (logged %v), want still disconnected, 0 reconnects", st, ok)
	}
}
