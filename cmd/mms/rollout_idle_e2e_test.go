package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/bench"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// heldWindow is how long TestHeldNodeIsIdle measures a held node.
const heldWindow = 10 * time.Second

// TestHeldNodeIsIdle runs three real agent processes and rolls out a
// version whose wave-1 node stays pending (its machine never gets ready
// within the gate's minute): a node of wave 2 is held, waiting for wave 1.
// Over 10 s of that wait, the held agent's CPU (from /proc/<pid>/stat) is
// that of an idle agent, at most 2 % of a core, and its reconcile passes
// (mms_spec_passes_total on its /metrics) are at most one a second plus
// one per change of another node's report (its entries, not its
// heartbeats, which come every second). Before, a held node re-ran its
// pass every millisecond.
func TestHeldNodeIsIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agent processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ids := []string{"a.example.net", "b.example.net", "c.example.net"}
	f := newArchiveRepo(t)
	v1 := f.publish(t, "web", "1.0.0")
	v2 := gateRollout(f.publishCheck(t, "web", "2.0.0", "exit 1"), time.Minute, "1", "100%")
	first := wavesOf(t, ids, v2)[0][0]
	// The held node measured: in wave 2 and not the one running the
	// embedded server (whose CPU is the server's too).
	held := ids[1]
	if held == first {
		held = ids[2]
	}
	fl := startAgents(t, ids, func(id string) []string {
		if id == held {
			return []string{"--metrics-listen", "127.0.0.1:0"}
		}
		return nil
	})
	fl.f.repo = f
	if r := fl.put(t, []string{"--wait", "60s"}, v1); r.code != 0 {
		t.Fatalf("put --wait of 1.0.0 = exit %d:\n%s", r.code, r.stderr)
	}
	metrics := metricsBase(t, fl.agents[held])

	if r := fl.put(t, nil, v2); r.code != 0 {
		t.Fatalf("put of the 2.0.0 rollout = exit %d:\n%s", r.code, r.stderr)
	}
	fl.entry(t, first, "web", func(e nodestatus.Entry) error {
		if e.Health != "pending" || e.Checksum != v2.Checksum {
			return errors.New("want 2.0.0 pending")
		}
		return nil
	})
	fl.entry(t, held, "web", func(e nodestatus.Entry) error {
		if want := "held: waiting for wave 1 (node " + first + " is pending)"; e.Outcome != "held" || e.Reason != want {
			return fmt.Errorf("want %q", want)
		}
		return nil
	})

	// Count the changes of the other nodes' reports while measuring.
	changes := countReportChanges(t, fl.login, held)
	cpu0, err := bench.ProcCPU(fl.agents[held].pid())
	if err != nil {
		t.Fatal(err)
	}
	passes0 := passes(t, metrics)
	start := time.Now()
	time.Sleep(heldWindow) // a measurement window, not a wait for an outcome
	cpu1, err := bench.ProcCPU(fl.agents[held].pid())
	if err != nil {
		t.Fatal(err)
	}
	passes1 := passes(t, metrics)
	elapsed := time.Since(start)
	changed := changes()

	cpu := cpu1 - cpu0
	share := float64(cpu) / float64(elapsed) * 100
	n := passes1 - passes0
	t.Logf("held node %s over %v: CPU %v (%.2f %% of a core), %d reconcile passes, %d changes of the other nodes' reports", held, elapsed.Round(time.Millisecond), cpu, share, n, changed)
	if share > 2 {
		t.Errorf("a held node used %.2f %% of a core over %v (%v of CPU), want at most 2 %%", share, elapsed.Round(time.Millisecond), cpu)
	}
	if most := int(elapsed/time.Second) + changed + 1; n > most {
		t.Errorf("a held node ran %d passes in %v with %d changes of the others' reports, want at most %d (one a second plus one per change)", n, elapsed.Round(time.Millisecond), changed, most)
	}
	if e, _ := pollStatus(t, fl.conn, held, func(*nodestatus.Document) error { return nil }).Entry("web"); e.Outcome != "held" {
		t.Errorf("after the window %s's web = %+v, want still held (the measurement is of a held node)", held, e)
	}
}

// metricsBase returns the base URL of agent's /metrics, from its log.
func metricsBase(t *testing.T, agent *proc) string {
	t.Helper()
	var base string
	natstest.Eventually(t, e2eTimeout, func() error {
		m := metricsURL.FindStringSubmatch(agent.stderr.String())
		if m == nil {
			return errors.New("no metrics address in the log yet")
		}
		base = m[1]
		return nil
	})
	return base
}

// passes returns the agent's reconcile passes so far: the sum of
// mms_spec_passes_total over its outcomes.
func passes(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total, found := 0, false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "mms_spec_passes_total{") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		total += int(v)
		found = true
	}
	if !found {
		t.Fatalf("/metrics has no mms_spec_passes_total:\n%s", body)
	}
	return total
}

// countReportChanges watches the status bucket from now and returns a
// function that stops and says how many times another node than except
// wrote a document whose entries or stop time differ from its last one
// (a heartbeat changes neither).
func countReportChanges(t *testing.T, login agentLogin, except string) func() int {
	t.Helper()
	nc := login.connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	changes, initial := 0, true
	done := make(chan struct{})
	stopped := make(chan int)
	go func() {
		defer nc.Close()
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-done:
				stopped <- changes
				return
			case e := <-w.Updates():
				if e == nil {
					initial = false
					continue
				}
				d, err := nodestatus.ParseDocument(e.Value())
				if err != nil || d.Identity == except {
					continue
				}
				b, _ := json.Marshal(struct {
					Entries []nodestatus.Entry
					Stopped bool
				}{d.Entries, !d.StoppedAt.IsZero()})
				if prev, ok := last[e.Key()]; ok && prev != string(b) && !initial {
					changes++
				}
				last[e.Key()] = string(b)
			}
		}
	}()
	return func() int { close(done); return <-stopped }
}

// TestPutWaitFollowsAPause: `mms put --wait 60s`, with the default
// --timeout (10s), follows a rollout in two waves with a 20 s pause
// between them to its end: the progress names the wave, the pause and
// who is pending, and it exits 0 once both nodes run the new version.
func TestPutWaitFollowsAPause(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two agent processes and waits out a 20 s pause")
	}
	ids := []string{"a.example.net", "b.example.net"}
	fl := startAgents(t, ids, nil)
	v1 := fl.f.repo.publish(t, "web", "1.0.0")
	if r := fl.put(t, []string{"--wait", "60s"}, v1); r.code != 0 {
		t.Fatalf("put --wait of 1.0.0 = exit %d:\n%s", r.code, r.stderr)
	}
	v2 := gateRollout(fl.f.repo.publish(t, "web", "2.0.0"), 30*time.Second, "1", "100%")
	v2.Rollout.Pause = spec.Duration(20 * time.Second)
	waves := wavesOf(t, ids, v2)
	start := time.Now()
	r := fl.put(t, []string{"--wait", "60s"}, v2)
	took := time.Since(start)
	t.Logf("put --wait 60s took %v; stderr:\n%s", took.Round(time.Millisecond), r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, "applied by all 2 reporting agents\n") {
		t.Fatalf("put --wait 60s of a rollout with a 20 s pause = exit %d\nstdout:\n%s\nstderr:\n%s\nwant 0, both applied", r.code, r.stdout, r.stderr)
	}
	pausing := regexp.MustCompile(`(?m)^serial \d+: 1/2 applied; web wave 2 of 2 pausing 1\ds; pending: ` + regexp.QuoteMeta(waves[1][0]) + `$`)
	if !pausing.MatchString(r.stderr) {
		t.Errorf("put --wait's progress does not name the wave, the pause and who is pending:\n%s", r.stderr)
	}
	if took < 20*time.Second {
		t.Errorf("put --wait returned after %v, before the 20 s pause ended", took)
	}
	fl.docs(t, each(ids, "web", func(_ string, e nodestatus.Entry) error {
		if e.Installed != v2.Checksum || e.Health != "healthy" {
			return errors.New("want 2.0.0 healthy")
		}
		return nil
	}))
}
