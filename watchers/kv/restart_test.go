package kvwatcher

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats-server/v2/server"
)

// restartable is a JetStream server whose store and port survive a restart,
// with a natsbox client (which reconnects and runs OnReconnect hooks).
type restartable struct {
	dir    string
	port   int
	s      *server.Server
	client *natsbox.Client
}

func newRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{dir: t.TempDir()}
	r.s = natstest.Run(t, natstest.Options(r.dir))
	r.port = r.s.Addr().(*net.TCPAddr).Port
	c, err := natsbox.Connect(t.Context(), natsbox.ConnectConfig{Servers: []string{r.s.ClientURL()}, FailFast: true})
	if err != nil {
		t.Fatalf("natsbox.Connect(%s) = %v", r.s.ClientURL(), err)
	}
	t.Cleanup(c.Close)
	r.client = c
	return r
}

// restart stops the server, waits until the client noticed, and starts it
// again on the same port with the same store.
func (r *restartable) restart(t *testing.T) {
	t.Helper()
	r.stop(t)
	natstest.Eventually(t, waitFor, func() error {
		if r.client.Status.Snapshot().Connected {
			return errors.New("client still connected")
		}
		return nil
	})
	r.start(t)
}

// stop stops the server.
func (r *restartable) stop(t *testing.T) {
	t.Helper()
	r.s.Shutdown()
	r.s.WaitForShutdown()
}

// start starts the server again on its port with its store.
func (r *restartable) start(t *testing.T) {
	t.Helper()
	opts := natstest.Options(r.dir)
	opts.Port = r.port
	r.s = natstest.Run(t, opts)
}

// TestWatchSurvivesServerRestart: after the server restarts, a put is seen
// through the reconnect hook (the resync timer is set to an hour, so it
// cannot help), far sooner than the ≈20 s a KV watch takes to come back by
// itself.
func TestWatchSurvivesServerRestart(t *testing.T) {
	r := newRestartable(t)
	env := envFor(t, r.client.Conn)
	kv := env.bucket(t, "MACHINES")
	rev1 := put(t, kv, "spec", "v1")

	d := watchertest.Deps(t)
	d.Conn, d.OnReconnect = r.client.Conn, r.client.Status.OnReconnect
	w := watchertest.BuildWith(t, d, "kv", `{"bucket":"MACHINES","key":"spec","resync_interval":"1h"}`).(*Watcher)
	st := step(t, w)
	st.until("the value before the restart", changedAt(rev1))

	r.restart(t)
	start := time.Now()
	var rev2 uint64
	natstest.Eventually(t, waitFor, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		rev, err := kv.PutString(ctx, "spec", "v2")
		rev2 = rev
		return err
	})
	put := time.Since(start)
	st.until("the put after the restart", changedAt(rev2))
	t.Logf("server back: put accepted after %v, seen by the watcher after %v", put, time.Since(start))
	wantData(t, d, "MACHINES_spec", "v2")
	if n := st.count(func(r result) bool { return r.err != nil }); n != 0 {
		t.Logf("checks that reported a stream error during the restart: %d", n)
	}
}

// TestPollTriggersAfterReconnect: poll mode asks for a check as soon as the
// connection is back, rather than waiting for its interval.
func TestPollTriggersAfterReconnect(t *testing.T) {
	r := newRestartable(t)
	envFor(t, r.client.Conn).bucket(t, "MACHINES")
	d := watchertest.Deps(t)
	d.Conn, d.OnReconnect = r.client.Conn, r.client.Status.OnReconnect
	w := watchertest.BuildWith(t, d, "kv", `{"bucket":"MACHINES","key":"spec","mode":"poll"}`).(*Watcher)
	st := step(t, w)
	r.restart(t)
	select {
	case <-st.trig:
	case <-time.After(waitFor):
		t.Fatalf("no trigger within %v of the reconnect", waitFor)
	}
}

// TestWatchErrorClearsOnRecovery: a read that fails while the server is
// down is reported by the next check; once the server is back and the
// stream recovers, it asks for a check at once, and that check reports no
// error (the agent's status showed the stale error until the check
// interval, a minute by default, flagging a healthy node).
func TestWatchErrorClearsOnRecovery(t *testing.T) {
	r := newRestartable(t)
	kv := envFor(t, r.client.Conn).bucket(t, "MACHINES")
	rev1 := put(t, kv, "spec", "v1")
	d := watchertest.Deps(t)
	d.Conn, d.OnReconnect = r.client.Conn, r.client.Status.OnReconnect
	w := watchertest.BuildWith(t, d, "kv", `{"bucket":"MACHINES","key":"spec","resync_interval":"1s"}`).(*Watcher)
	st := step(t, w)
	st.until("the value", changedAt(rev1))

	r.stop(t)
	st.until("the failed read while the server is down", func(r result) bool { return r.err != nil })
	r.start(t)
	st.until("a check without the error once the server is back", func(r result) bool { return r.err == nil })
}
