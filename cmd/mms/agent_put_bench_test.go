package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// benchMMS runs the CLI in-process and fails b unless it exits 0.
func benchMMS(b *testing.B, stdin string, args ...string) string {
	b.Helper()
	var out, errOut bytes.Buffer
	if code := run(b.Context(), args, strings.NewReader(stdin), &out, &errOut); code != 0 {
		b.Fatalf("mms %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// benchAgent is an in-process agent with the embedded server, and what
// the benchmark watches on it.
type benchAgent struct {
	state   string               // the agent's state directory (its server's credentials)
	serials chan uint64          // serials of the manager's machines events
	status  jetstream.KeyWatcher // the agent's status document
	stop    func()               // stops the agent and closes the connection
}

// startBenchAgent starts an agent trusting pub with its state in state.
func startBenchAgent(b *testing.B, pub, state, identity string) *benchAgent {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	banner := &bannerWatch{ready: make(chan struct{})}
	errOut := &syncbuf.Buffer{}
	done := make(chan int, 1)
	args := []string{"agent", "--public-key", pub, "--state-dir", state, "--listen", "127.0.0.1:0",
		"--allow-http", "--identity", identity, "--log-level", "error"}
	go func() { done <- run(ctx, args, strings.NewReader(""), io.Discard, io.MultiWriter(banner, errOut)) }()
	select {
	case <-banner.ready:
	case code := <-done:
		cancel()
		b.Fatalf("agent exited with %d before its banner:\n%s", code, errOut.String())
	}
	a := &benchAgent{state: state, serials: make(chan uint64, 64)}
	nc := agentConn(b, state)
	a.stop = func() {
		nc.Close()
		cancel()
		if code := <-done; code != 0 {
			b.Errorf("agent exit code = %d:\n%s", code, errOut.String())
		}
	}
	if _, err := nc.Subscribe(agent.WatcherStateSubject("machines"), func(m *nats.Msg) {
		if st, err := decodeManagerState(m.Data); err == nil && st.Identity == identity {
			a.serials <- st.Serial
		}
	}); err != nil {
		a.stop()
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var kv jetstream.KeyValue
		if kv, err = js.KeyValue(b.Context(), nodestatus.Bucket); err == nil {
			a.status, err = kv.Watch(b.Context(), nodestatus.Key(identity), jetstream.UpdatesOnly())
		}
	}
	if err != nil {
		a.stop()
		b.Fatal(err)
	}
	return a
}

// putRound runs `mms pack machines.json | mms put` of serial to a and
// waits for the manager's event and the status document of that serial;
// it returns how long each took from the start of pack.
func putRound(b *testing.B, a *benchAgent, serial uint64) (toEvent, toStatus time.Duration) {
	b.Helper()
	start := time.Now()
	env := benchMMS(b, "", "pack", "machines.json", "--key-file", "ops.key", "--allow-http", "--serial", strconv.FormatUint(serial, 10))
	benchMMS(b, env, "put", "--state-dir", a.state)
	waitSerial(b, a.serials, serial)
	toEvent = time.Since(start)
	waitStatus(b, a.status.Updates(), serial)
	return toEvent, time.Since(start)
}

// BenchmarkAgentPutToRunning measures the time from `mms pack machines.json
// | mms put` of a new serial to
//
//   - event: the agent's manager publishing its machines event for that
//     serial, after it verified the spec and installed and loaded the
//     machine it names (serials alternate the machine between two
//     versions, so every put installs something);
//   - status: the agent's status document showing that serial (the writer
//     rewrites the document at most every nodestatus.DefaultMinInterval, so this includes that
//     pacing).
//
// "quiet" starts a fresh agent (embedded server, empty state) for every
// put, outside the timer: the first spec an idle node gets. "burst" puts
// serial after serial to one agent as fast as it acts on them. ns/op is
// one round (to the status document); the p50/p99 metrics are in
// milliseconds.
func BenchmarkAgentPutToRunning(b *testing.B) {
	dir := b.TempDir()
	b.Chdir(dir)
	benchMMS(b, "", "keys", "--out", "ops")
	pub := strings.TrimSpace(string(mustRead(b, filepath.Join(dir, "ops.pub"))))
	repo := newArchiveRepo(b)
	versions := []spec.Machine{repo.publish(b, "web", "1.0.0"), repo.publish(b, "web", "2.0.0")}
	const identity = "bench1"

	report := func(b *testing.B, toEvent, toStatus []time.Duration) {
		b.ReportMetric(percentileMS(toEvent, 50), "event-p50-ms")
		b.ReportMetric(percentileMS(toEvent, 99), "event-p99-ms")
		b.ReportMetric(percentileMS(toStatus, 50), "status-p50-ms")
		b.ReportMetric(percentileMS(toStatus, 99), "status-p99-ms")
	}
	b.Run("quiet", func(b *testing.B) {
		writeMachines(b, dir, versions[0])
		var toEvent, toStatus []time.Duration
		for b.Loop() {
			b.StopTimer()
			a := startBenchAgent(b, pub, b.TempDir(), identity)
			b.StartTimer()
			e, s := putRound(b, a, 1)
			b.StopTimer()
			a.stop()
			b.StartTimer()
			toEvent, toStatus = append(toEvent, e), append(toStatus, s)
		}
		report(b, toEvent, toStatus)
	})
	b.Run("burst", func(b *testing.B) {
		a := startBenchAgent(b, pub, b.TempDir(), identity)
		defer a.stop()
		var toEvent, toStatus []time.Duration
		var serial uint64
		for b.Loop() {
			b.StopTimer()
			serial++
			writeMachines(b, dir, versions[serial%2])
			b.StartTimer()
			e, s := putRound(b, a, serial)
			toEvent, toStatus = append(toEvent, e), append(toStatus, s)
		}
		report(b, toEvent, toStatus)
	})
}

// waitSerial waits for the manager's event for serial; events of older
// serials are skipped.
func waitSerial(b *testing.B, serials <-chan uint64, serial uint64) {
	b.Helper()
	timeout := time.After(e2eTimeout)
	for {
		select {
		case s := <-serials:
			if s == serial {
				return
			}
		case <-timeout:
			b.Fatalf("no machines event for serial %d within %v", serial, e2eTimeout)
		}
	}
}

// waitStatus waits for a status document showing serial.
func waitStatus(b *testing.B, updates <-chan jetstream.KeyValueEntry, serial uint64) {
	b.Helper()
	timeout := time.After(e2eTimeout)
	for {
		select {
		case e := <-updates:
			if e == nil {
				continue
			}
			if doc, err := nodestatus.ParseDocument(e.Value()); err == nil && doc.AppliedSerial() == serial {
				return
			}
		case <-timeout:
			b.Fatalf("no status document with serial %d within %v", serial, e2eTimeout)
		}
	}
}

// percentileMS returns the p-th percentile of ds in milliseconds (nearest
// rank).
func percentileMS(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	return float64(s[max(i, 1)-1]) / float64(time.Millisecond)
}

// mustRead reads a file or fails tb.
func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
