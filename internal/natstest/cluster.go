package natstest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mms-io/mms/internal/jscluster"
)

// clusterReadyTimeout bounds the wait for a new cluster's JetStream meta
// leader, and for a stream leader to be elected.
const clusterReadyTimeout = 30 * time.Second

// RunCluster starts n servers on loopback that form a JetStream cluster
// (named "natstest", servers "n1"…), each with its own t.TempDir() store, and
// returns once a JetStream meta leader exists, every server is current and
// the leader sees all n peers, so replicated streams can be created at once.
// The servers stop when the test ends.
//
// Every route lists all n cluster ports, as a production config would, so the
// meta group expects n peers from the start. The ports are picked free just
// before the servers bind them; if another process takes one in between,
// the whole cluster is started again on new ports (up to three times).
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: RunCluster(%d): want at least 1 server", n)
	}
	var errs []error
	for range 3 {
		servers, err := startCluster(t, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		Eventually(t, clusterReadyTimeout, func() error { return jscluster.Ready(servers) })
		return servers
	}
	t.Fatalf("natstest: start %d-server cluster: %v", n, errors.Join(errs...))
	return nil
}

// startCluster starts n clustered servers on freshly picked route ports and
// waits until each accepts connections. On failure it stops those it started.
func startCluster(t testing.TB, n int) ([]*server.Server, error) {
	ports, err := jscluster.FreePorts(n)
	if err != nil {
		return nil, err
	}
	routes := jscluster.Routes(ports)
	servers := make([]*server.Server, 0, n)
	stopAll := func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	for i := range n {
		opts := Options(t.TempDir())
		opts.ServerName = fmt.Sprintf("n%d", i+1)
		opts.Cluster = server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = routes
		s, err := server.NewServer(opts)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("new server %s: %w", opts.ServerName, err)
		}
		s.Start()
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			stopAll()
			return nil, fmt.Errorf("server %s not ready after 10s (route port taken?)", s.Name())
		}
	}
	t.Cleanup(stopAll)
	return servers, nil
}

// ClientURLs returns the client URLs of servers as one comma-separated list,
// for a client that should fail over between them.
func ClientURLs(servers []*server.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// StreamLeader waits until one of the running servers leads stream (in the
// default account) and returns it. A KV bucket's stream is KV_<bucket>.
func StreamLeader(t testing.TB, servers []*server.Server, stream string) *server.Server {
	t.Helper()
	var leader *server.Server
	Eventually(t, clusterReadyTimeout, func() error {
		for _, s := range servers {
			if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
				leader = s
				return nil
			}
		}
		return fmt.Errorf("no leader for stream %s", stream)
	})
	return leader
}

// ShutdownStreamLeader shuts down the server leading stream, waits until it
// has stopped and returns it.
func ShutdownStreamLeader(t testing.TB, servers []*server.Server, stream string) *server.Server {
	t.Helper()
	leader := StreamLeader(t, servers, stream)
	leader.Shutdown()
	leader.WaitForShutdown()
	return leader
}
