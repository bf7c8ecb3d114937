package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// restartAgents is how many agents TestFleetSurvivesClusterRestart runs.
const restartAgents = 200

// inProcessAgent is `mms agent` run in this test process.
type inProcessAgent struct {
	cancel context.CancelFunc
	done   chan int
	stderr *syncbuf.Buffer
}

// startInProcessAgent runs `mms agent args…` in this process until stop.
func startInProcessAgent(args []string) *inProcessAgent {
	ctx, cancel := context.WithCancel(context.Background())
	a := &inProcessAgent{cancel: cancel, done: make(chan int, 1), stderr: &syncbuf.Buffer{}}
	go func() { a.done <- run(ctx, args, strings.NewReader(""), &syncbuf.Buffer{}, a.stderr) }()
	return a
}

// stopInProcessAgents stops every agent at once and waits for each.
func stopInProcessAgents(t *testing.T, agents []*inProcessAgent) {
	t.Helper()
	for _, a := range agents {
		a.cancel()
	}
	for i, a := range agents {
		select {
		case code := <-a.done:
			if code != 0 {
				t.Errorf("agent %d exit %d:\n%s", i, code, a.stderr)
			}
		case <-time.After(time.Minute):
			t.Errorf("agent %d did not stop within a minute", i)
		}
	}
}

// fleetState reads every agent's status document (a direct get each, so
// reading creates no consumer) and counts those that run checksum of web
// healthy.
func fleetState(ctx context.Context, kv jetstream.KeyValue, ids []string, checksum string) (running int, err error) {
	for _, id := range ids {
		e, err := kv.Get(ctx, nodestatus.Key(id))
		if err != nil {
			return running, fmt.Errorf("%s: %w", id, err)
		}
		d, err := nodestatus.ParseDocument(e.Value())
		if err != nil {
			return running, fmt.Errorf("%s: %w", id, err)
		}
		if en := entryOf(d, "web"); en != nil && en.Installed == checksum && en.Health == string(rollout.Healthy) {
			running++
		}
	}
	return running, nil
}

// consumers returns the consumer count of each stream.
func consumers(ctx context.Context, js jetstream.JetStream, streams ...string) (map[string]int, error) {
	out := map[string]int{}
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		si, err := s.Info(ctx)
		if err != nil {
			return nil, err
		}
		out[name] = si.State.Consumers
	}
	return out, nil
}

// TestFleetSurvivesClusterRestart is issue 25's whole-cluster restart: 200
// agents (in this process, as `mms bench` runs fleets) on three server
// processes made ready by `mms init --replicas 3` run a version of web
// whose entry has a health gate and a one-wave rollout, so every agent
// also follows the status bucket. Every server is then killed with
// SIGKILL and all are started again: a new version put once the cluster
// answers reaches every agent, and the consumers of the spec and status
// streams (one watch per agent on each) number the same as before, none
// left over from the watches the agents made again.
func TestFleetSurvivesClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and 200 agents")
	}
	mmsBinary(t) // built before the test changes directory
	started := time.Now()
	elapsed := func() time.Duration { return time.Since(started).Round(time.Millisecond) }
	f := newOperatorFixture(t)
	pub := strings.TrimSpace(readFile(t, f.pub))
	servers := natstest.RunClusterProcesses(t, 3)
	urls := natstest.ProcessURLs(servers)
	natstest.Eventually(t, killTimeout, func() error { // the new cluster elects its leaders
		if r := mmsExec(t, nil, "init", "--replicas", "3", "--server", urls); r.code != 0 {
			return fmt.Errorf("mms init --replicas 3 = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	_, js := connectJS(t, urls)
	ctx := t.Context()
	status, err := js.KeyValue(ctx, nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	gated := func(m spec.Machine) spec.Machine {
		m.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(2 * time.Minute)}
		m.Rollout = &spec.Rollout{Waves: []string{"100%"}}
		return m
	}
	serial := uint64(time.Now().Unix())
	put := func(m spec.Machine) {
		t.Helper()
		writeMachines(t, f.dir, m)
		serial++
		env := mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--serial", fmt.Sprint(serial)).stdout
		natstest.Eventually(t, killTimeout, func() error {
			if r := mms(t, env, "put", "--server", urls); r.code != 0 {
				return fmt.Errorf("mms put = exit %d: %s", r.code, r.stderr)
			}
			return nil
		})
	}
	v1 := gated(uploadMachine(t, urls, machineSourceDir(t, "web", "1.0.0")))
	put(v1)

	// The fleet, started a few dozen at a time.
	ids := make([]string, restartAgents)
	agents := make([]*inProcessAgent, 0, restartAgents)
	t.Cleanup(func() { stopInProcessAgents(t, agents) })
	states := t.TempDir()
	for i := range ids {
		ids[i] = fmt.Sprintf("r%03d.example.net", i)
	}
	converged := func(what, checksum string, n int) time.Duration {
		t.Helper()
		start := time.Now()
		running := 0
		natstest.Eventually(t, 3*time.Minute, func() error {
			var err error
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if running, err = fleetState(rctx, status, ids[:n], checksum); err != nil {
				return err
			}
			if running < n {
				return fmt.Errorf("%s: %d of %d agents run it healthy", what, running, n)
			}
			return nil
		})
		return time.Since(start)
	}
	const batch = 40
	for i := range ids {
		dir := filepath.Join(states, ids[i])
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, startInProcessAgent([]string{"agent", "--server", urls, "--public-key", pub,
			"--state-dir", dir, "--identity", ids[i], "--status-interval", "10s", "--log-level", "warn",
			"--fs-notify=false"})) // 200 hosts in one process: inotify instances are 128 per user
		if (i+1)%batch == 0 || i == len(ids)-1 {
			converged("1.0.0", v1.Checksum, i+1)
		}
	}
	t.Logf("%v: %d agents run 1.0.0 healthy", elapsed(), restartAgents)

	streams := []string{"KV_MACHINES", "KV_MACHINES_STATUS"}
	var before map[string]int
	natstest.Eventually(t, killTimeout, func() error { // every watch made, none pending deletion
		var err error
		if before, err = consumers(ctx, js, streams...); err != nil {
			return err
		}
		if before["KV_MACHINES"] != restartAgents || before["KV_MACHINES_STATUS"] != restartAgents {
			return fmt.Errorf("consumers %v, want one per agent on each", before)
		}
		return nil
	})

	// Every server dies at once, and comes back.
	for _, s := range servers {
		s.Kill(t)
	}
	down := time.Now()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { s.Start(t) })
	}
	wg.Wait()
	natstest.Eventually(t, killTimeout, func() error {
		r := mmsExec(t, nil, "init", "--check", "--replicas", "3", "--server", urls)
		if r.code != 0 {
			return fmt.Errorf("mms init --check = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	answered := time.Since(down)
	t.Logf("%v: the cluster restarted, every replica current %v after the kill", elapsed(), answered.Round(time.Millisecond))

	v2 := gated(uploadMachine(t, urls, machineSourceDir(t, "web", "2.0.0")))
	putAt := time.Now()
	put(v2)
	converged("2.0.0", v2.Checksum, restartAgents)
	reconverged := time.Since(putAt)

	var after map[string]int
	natstest.Eventually(t, 2*time.Minute, func() error { // the watches of before the restart expire
		var err error
		if after, err = consumers(ctx, js, streams...); err != nil {
			return err
		}
		for _, s := range streams {
			if after[s] != before[s] {
				return fmt.Errorf("consumers %v, want %v as before the restart", after, before)
			}
		}
		return nil
	})
	t.Logf("%v: %d agents; cluster back %v after the SIGKILL of every server; 2.0.0 on every agent %v after its put; consumers before %v, after %v",
		elapsed(), restartAgents, answered.Round(time.Millisecond), reconverged.Round(time.Millisecond), before, after)
	for i, a := range agents {
		select {
		case code := <-a.done:
			t.Errorf("agent %s exited (%d):\n%s", ids[i], code, a.stderr)
		default:
		}
	}
}

// connectJS connects the test to urls (a server list), reconnecting
// forever and quietly while servers are killed, and closes the
// connection when the test ends.
func connectJS(t *testing.T, urls string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	quiet := func(o *nats.Options) error {
		o.DisconnectedErrCB = func(*nats.Conn, error) {}
		o.AsyncErrorCB = func(*nats.Conn, *nats.Subscription, error) {}
		return nil
	}
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), quiet}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatalf("connect to %s: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
