package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/provision"
)

// clusterTimeout bounds the waits that span a JetStream leader election.
const clusterTimeout = 60 * time.Second

// TestAgentClusterLeaderLoss runs a client agent against a three-server
// JetStream cluster holding the spec bucket with three replicas. The agent
// installs serial 1; the server leading the spec bucket's stream is shut
// down; serial 2, put through the survivors, is installed too, and the
// status document follows. The agent is given every server, or only the
// stream leader, so that it certainly loses its own server with the leader
// and must fail over to the servers the cluster told it about.
func TestAgentClusterLeaderLoss(t *testing.T) {
	tests := []struct {
		name       string
		leaderOnly bool
	}{
		{"every server given", false},
		{"only the leader given", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testAgentClusterLeaderLoss(t, tt.leaderOnly)
		})
	}
}

func testAgentClusterLeaderLoss(t *testing.T, leaderOnly bool) {
	servers := natstest.RunCluster(t, 3)
	ctx := t.Context()
	js, err := jetstream.New(natstest.Connect(t, servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	f := provision.Defaults()
	f.Replicas = 3
	natstest.Eventually(t, clusterTimeout, func() error { // a new cluster may still be placing
		_, err := provision.Apply(ctx, js, f)
		return err
	})
	const stream = "KV_" + mmsmanager.DefaultBucket

	dir := t.TempDir()
	t.Chdir(dir)
	_, pub := newKeyPair(t, dir, "ops")
	state := filepath.Join(dir, "state")
	const identity = "edge1"
	all := natstest.ClientURLs(servers)
	agentServers := all
	if leaderOnly {
		agentServers = natstest.StreamLeader(t, servers, stream).ClientURL()
	}
	_, errOut, stop := runUntil(t, "agent", "--server", agentServers, "--public-key", strings.TrimSpace(readFile(t, pub)),
		"--state-dir", state, "--allow-http", "--identity", identity, "--status-interval", "500ms")
	waitFor(t, errOut, "using NATS at "+agentServers)

	repo := newArchiveRepo(t)
	sign := []string{"--key-file", "ops.key", "--allow-http"}
	installedYAML := filepath.Join(state, "machines", "web", "machine.yaml")
	converged := func(servers []*server.Server, serial uint64, version string) *nodestatus.Document {
		t.Helper()
		var doc *nodestatus.Document
		natstest.Eventually(t, clusterTimeout, func() error {
			if got := readFileErr(installedYAML); got != runnableMachineYAML("web", version) {
				return fmt.Errorf("installed machine.yaml = %q, want web %s", got, version)
			}
			var err error
			if doc, err = statusJSON(t, []string{"--server", natstest.ClientURLs(servers)}, identity); err != nil {
				return err
			}
			return wantMachineServing(doc, serial, version)
		})
		return doc
	}

	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	serial := packPut(t, append(sign, "--serial", "1"), []string{"--server", all})
	before := converged(servers, serial, "1.0.0")

	leader := natstest.ShutdownStreamLeader(t, servers, stream)
	var survivors []*server.Server
	for _, s := range servers {
		if s != leader {
			survivors = append(survivors, s)
		}
	}
	if leaderOnly && before.NATS.Server != leader.Name() {
		t.Fatalf("agent connected to %q (%s), want the stream leader %q", before.NATS.Server, before.NATS.URL, leader.Name())
	}
	t.Logf("stream leader %s shut down; the agent was connected to %s", leader.Name(), before.NATS.Server)

	// The survivors elect a new leader; put retries until one is in place.
	writeMachines(t, dir, repo.publish(t, "web", "2.0.0"))
	env := mmsOK(t, "", append([]string{"pack", "machines.json", "--serial", strconv.FormatUint(serial+1, 10)}, sign...)...).stdout
	natstest.Eventually(t, clusterTimeout, func() error {
		r := mms(t, env, "put", "--server", natstest.ClientURLs(survivors), "--timeout", "5s")
		if r.code != 0 {
			return fmt.Errorf("mms put through the survivors: exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	after := converged(survivors, serial+1, "2.0.0")
	if after.NATS.Server == leader.Name() || !after.NATS.Connected {
		t.Errorf("status NATS after the leader loss = %+v, want connected to a survivor", after.NATS)
	}
	if leaderOnly && after.NATS.Reconnects == 0 {
		t.Errorf("status NATS = %+v, want a reconnect after its server stopped", after.NATS)
	}

	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
}

// wantMachineServing returns an error unless doc shows serial and web at
// version in its ready state.
func wantMachineServing(doc *nodestatus.Document, serial uint64, version string) error {
	m := findMachine(doc, "web")
	if doc.AppliedSerial() != serial || m == nil || m.Version != version || m.State != "ready" {
		return fmt.Errorf("status = serial %d, web %+v; want serial %d, web %s ready", doc.AppliedSerial(), m, serial, version)
	}
	return nil
}

// readFileErr returns the file's content, or the error reading it.
func readFileErr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
