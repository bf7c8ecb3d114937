// Package jscluster has what starting a JetStream cluster on one machine
// needs besides the servers: free ports for the routes, the routes, and the
// check that the cluster is ready for replicated streams. The tests'
// clusters (internal/natstest) and mms bench's use it.
package jscluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago, for the routes of a cluster about to start on this machine. Another
// process may take one before it is bound: callers start the cluster again
// on new ports when a server fails to listen.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Routes returns the routes of a cluster whose servers listen for routes
// on ports of loopback: every route, as a production config lists them, so
// the meta group expects every peer from the start.
func Routes(ports []int) []*url.URL {
	urls := make([]string, len(ports))
	for i, p := range ports {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return server.RoutesFromStr(strings.Join(urls, ","))
}

// Ready says why servers are not yet a usable JetStream cluster; it
// returns nil once a meta leader exists, every server's meta group is
// current and the leader counts every server as a peer, so replicated
// streams can be created.
func Ready(servers []*server.Server) error {
	var leader *server.Server
	for _, s := range servers {
		if !s.JetStreamIsClustered() {
			return fmt.Errorf("server %s: jetstream is not clustered", s.Name())
		}
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("server %s: jetstream meta group not current", s.Name())
		}
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return errors.New("no jetstream meta leader")
	}
	if peers := leader.JetStreamClusterPeers(); len(peers) != len(servers) {
		return fmt.Errorf("meta leader %s sees peers %v, want %d", leader.Name(), peers, len(servers))
	}
	return nil
}
