package kvwatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterWait bounds each wait in the cluster tests. It is generous: a
// watch created while the stream elects a leader can wait out the 5 s
// JetStream API timeout once or twice before it works (≈ 0.3–6 s seen).
const clusterWait = 30 * time.Second

// r3Cluster is a 3-server JetStream cluster holding an R3 MACHINES bucket,
// with an admin connection to all servers.
type r3Cluster struct {
	servers []*server.Server
	admin   *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue
}

func newR3Cluster(t *testing.T) *r3Cluster {
	t.Helper()
	c := &r3Cluster{servers: natstest.RunCluster(t, 3)}
	nc, err := nats.Connect(natstest.ClientURLs(c.servers), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("nats.Connect(%s) = %v", natstest.ClientURLs(c.servers), err)
	}
	t.Cleanup(nc.Close)
	c.admin = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, clusterWait, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		c.kv, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MACHINES", Replicas: 3})
		return err
	})
	return c
}

// putEventually puts value, retrying while the cluster recovers.
func (c *r3Cluster) putEventually(t *testing.T, value string) uint64 {
	t.Helper()
	var rev uint64
	natstest.Eventually(t, clusterWait, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		r, err := c.kv.PutString(ctx, "spec", value)
		rev = r
		return err
	})
	return rev
}

// server returns the running server named name.
func (c *r3Cluster) server(t *testing.T, name string) *server.Server {
	t.Helper()
	for _, s := range c.servers {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no server named %q", name)
	return nil
}

// moveStreamLeader makes the server named to lead the bucket's stream.
func (c *r3Cluster) moveStreamLeader(t *testing.T, to string) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]any{"preferred": to}})
	natstest.Eventually(t, clusterWait, func() error {
		leader := natstest.StreamLeader(t, c.servers, "KV_MACHINES")
		if leader.Name() == to {
			return nil
		}
		if _, err := c.admin.Request("$JS.API.STREAM.LEADER.STEPDOWN.KV_MACHINES", req, 2*time.Second); err != nil {
			return fmt.Errorf("step down %s for %s: %w", leader.Name(), to, err)
		}
		return fmt.Errorf("leader was %s, want %s", leader.Name(), to)
	})
}

// consumerHost returns the server that holds the only consumer of the
// bucket's stream (the watch's).
func (c *r3Cluster) consumerHost(t *testing.T) string {
	t.Helper()
	var host string
	natstest.Eventually(t, clusterWait, func() error {
		s, err := c.js.Stream(t.Context(), "KV_MACHINES")
		if err != nil {
			return err
		}
		var infos []*jetstream.ConsumerInfo
		l := s.ListConsumers(t.Context())
		for ci := range l.Info() {
			infos = append(infos, ci)
		}
		if l.Err() != nil {
			return l.Err()
		}
		if len(infos) != 1 || infos[0].Cluster == nil || infos[0].Cluster.Leader == "" {
			return fmt.Errorf("want one placed consumer, have %d", len(infos))
		}
		host = infos[0].Cluster.Leader
		return nil
	})
	return host
}

// clusterClient connects a natsbox client (with reconnect hooks) to every
// server of the cluster.
func clusterClient(t *testing.T, c *r3Cluster) *natsbox.Client {
	t.Helper()
	cl, err := natsbox.Connect(t.Context(), natsbox.ConnectConfig{Servers: []string{natstest.ClientURLs(c.servers)}, FailFast: true})
	if err != nil {
		t.Fatalf("natsbox.Connect() = %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func clusterWatcher(t *testing.T, cl *natsbox.Client, props string) *Watcher {
	t.Helper()
	d := watchertest.Deps(t)
	d.Conn, d.OnReconnect = cl.Conn, cl.Status.OnReconnect
	return watchertest.BuildWith(t, d, "kv", props).(*Watcher)
}

// TestClusterStreamLeaderAndClientServerDown is issue 4 item 5: in a
// 3-server cluster with an R3 bucket, the server that leads the bucket's
// stream and holds the watcher's connection goes down; a put made after
// that still reaches the watcher. The watcher runs with the default
// settings.
func TestClusterStreamLeaderAndClientServerDown(t *testing.T) {
	start := time.Now()
	c := newR3Cluster(t)
	rev1 := c.putEventually(t, "v1")
	cl := clusterClient(t, c)
	connected := cl.Conn.ConnectedServerName()
	// Two of three servers down would lose the stream's quorum, so the
	// client's server is made the leader and one shutdown takes both.
	c.moveStreamLeader(t, connected)

	w := clusterWatcher(t, cl, `{"bucket":"MACHINES","key":"spec"}`)
	st := step(t, w)
	st.until("the value before the failure", changedAt(rev1))
	host := c.consumerHost(t)

	down := c.server(t, connected)
	down.Shutdown()
	down.WaitForShutdown()
	failed := time.Now()
	rev2 := c.putEventually(t, "v2")
	putAt := time.Since(failed)
	st.untilWithin(clusterWait, "the put after the failure", changedAt(rev2))
	t.Logf("shut down %s (stream leader, client's server; the watch's consumer was on %s); put accepted after %v, seen by the watcher after %v; now on %s; test ran %v",
		connected, host, putAt, time.Since(failed), cl.Conn.ConnectedServerName(), time.Since(start))
}

// TestClusterConsumerHostDown: the server holding the watch's consumer goes
// down while the client stays connected elsewhere, so the watch goes silent
// without a reconnect; the resync read finds the new put.
func TestClusterConsumerHostDown(t *testing.T) {
	start := time.Now()
	c := newR3Cluster(t)
	rev1 := c.putEventually(t, "v1")
	cl := clusterClient(t, c)
	connected := cl.Conn.ConnectedServerName()
	w := clusterWatcher(t, cl, `{"bucket":"MACHINES","key":"spec","resync_interval":"1s"}`)

	// The consumer lands on a random server; it must not be the client's.
	var st *stepper
	host := connected
	attempt := 0
	for ; host == connected; attempt++ {
		if attempt == 8 {
			t.Fatalf("the watch's consumer landed on the client's server %s %d times", connected, attempt)
		}
		if st != nil {
			st.stop()
			natstest.Eventually(t, clusterWait, func() error {
				s, err := c.js.Stream(t.Context(), "KV_MACHINES")
				if err != nil {
					return err
				}
				if n := s.CachedInfo().State.Consumers; n != 0 {
					return fmt.Errorf("%d consumers left", n)
				}
				return nil
			})
		}
		st = step(t, w)
		st.until("the value", func(r result) bool { return r.state.Revision == rev1 })
		host = c.consumerHost(t)
	}

	down := c.server(t, host)
	down.Shutdown()
	down.WaitForShutdown()
	failed := time.Now()
	rev2 := c.putEventually(t, "v2")
	putAt := time.Since(failed)
	st.untilWithin(clusterWait, "the put after the consumer's server went down", changedAt(rev2))
	if now := cl.Conn.ConnectedServerName(); now != connected {
		t.Logf("the client moved from %s to %s: this run did not exercise a silent watch", connected, now)
	}
	t.Logf("shut down %s (the watch's consumer, placed at attempt %d; client on %s); put accepted after %v, seen by the watcher after %v; test ran %v",
		host, attempt, connected, putAt, time.Since(failed), time.Since(start))
}
