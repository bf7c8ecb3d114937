package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/bench"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// TestBenchQuick builds the mms binary and runs `mms bench --quick` as a
// user would, the table on stdout and the JSON report in a file. It checks
// that every row was measured (none failed, each has numbers) and printed,
// and that the JSON parses; it asserts nothing about time. It lives here
// rather than in cmd/mms, whose end-to-end tests fill most of one test
// binary's ten minutes without it.
func TestBenchQuick(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the idle row reads /proc")
	}
	if testing.Short() {
		t.Skip("builds the binary and runs the quick bench (about 30 s)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build the binary: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mms")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/mms-io/mms/cmd/mms").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("sharded fleet", func(t *testing.T) { testBenchShards(t, bin, dir) })
	t.Run("a shard that stops", func(t *testing.T) { testBenchShardStops(t, bin, dir) })
	report := filepath.Join(dir, "bench.json")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "--quick", "--out", report, "--dir", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mms bench --quick: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("the --out report does not parse: %v\n%s", err, data)
	}
	if !rep.Quick || rep.CPUs < 1 {
		t.Errorf("report header: quick %v, cpus %d; want a quick run on at least 1 CPU", rep.Quick, rep.CPUs)
	}

	want := []string{"put", "fleet-10", "fleet-50", "fleet-slope", "fleet-10-http", "fleet-50-http", "fleet-slope-http", "fleet-nats-vs-http",
		"cluster-10", "cluster-50", "cluster-slope", "cluster-restart-10", "procs", "install-shell"}
	for _, src := range []string{"http", "https", "nats"} {
		want = append(want, "install-"+src+"-first", "install-"+src+"-upgrade")
	}
	want = append(want, "idle", "spec-1000", "spec-1000-next", "spec-10000", "spec-10000-next")
	var got []string
	for _, row := range rep.Rows {
		got = append(got, row.ID)
		if row.Error != "" {
			t.Errorf("row %s failed: %s", row.ID, row.Error)
		}
		if len(row.Values) == 0 {
			t.Errorf("row %s has no numbers: %+v", row.ID, row)
		}
		if !strings.Contains(stdout.String(), row.Name) {
			t.Errorf("row %s (%q) is not in the table:\n%s", row.ID, row.Name, stdout.String())
		}
		if row.Target != "" && row.Met == nil && row.Values["estimate_ms"] == 0 {
			t.Errorf("row %s has a target but was not judged: %+v", row.ID, row)
		}
	}
	for _, id := range want {
		if !slices.Contains(got, id) {
			t.Errorf("no row %s; rows: %v", id, got)
		}
	}
	// The two sources are measured on the same fleets, their puts
	// alternating: one start, one put each in a quick run.
	byID := map[string]bench.Row{}
	for _, row := range rep.Rows {
		byID[row.ID] = row
	}
	for _, n := range []string{"10", "50"} {
		nats, http := byID["fleet-"+n], byID["fleet-"+n+"-http"]
		if nats.Values["start_s"] == 0 || nats.Values["start_s"] != http.Values["start_s"] || nats.Values["puts"] != 1 || http.Values["puts"] != 1 {
			t.Errorf("fleet-%s and fleet-%s-http: start %v and %v s, %v and %v puts; want one fleet (the same start) with one put from each source",
				n, n, nats.Values["start_s"], http.Values["start_s"], nats.Values["puts"], http.Values["puts"])
		}
	}
	// Each single-server fleet was measured idle after its puts, and its
	// rows and slope leave that background out of the put's own CPU; the
	// cluster's were not.
	for _, id := range []string{"fleet-10", "fleet-50", "fleet-10-http", "fleet-50-http"} {
		v := byID[id].Values
		if v["idle_ms_per_agent_s"] <= 0 || v["background_ms_per_agent"] <= 0 || v["put_cpu_ms_per_agent"] != v["cpu_ms_per_agent"]-v["background_ms_per_agent"] {
			t.Errorf("%s: idle %v ms per agent per second, background %v, the put's own %v of %v ms per agent; want the idle fleet measured and its share left out",
				id, v["idle_ms_per_agent_s"], v["background_ms_per_agent"], v["put_cpu_ms_per_agent"], v["cpu_ms_per_agent"])
		}
	}
	if _, ok := byID["cluster-10"].Values["idle_ms_per_agent_s"]; ok {
		t.Errorf("cluster-10 was measured idle: %v", byID["cluster-10"].Values)
	}
	if slope := byID["fleet-slope"]; slope.Values["idle_ratio"] <= 0 || !strings.HasPrefix(slope.Result, "the put's own ") {
		t.Errorf("fleet-slope = %q %v, want the put's own CPU and the idle ratio", slope.Result, slope.Values)
	}
	if !strings.Contains(stderr.String(), "fleet of 50 agents, 1 server: measuring the idle fleet for 2.00 s") {
		t.Errorf("no progress line for the idle fleet on stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "mms bench: put → running") {
		t.Errorf("no progress line on stderr:\n%s", stderr.String())
	}
}

// testBenchShards runs a fleet row under an open file limit too low for
// one process to hold the fleet: the bench must run part of it in a shard
// process and still measure every agent.
func testBenchShards(t *testing.T, bin, dir string) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := shardedBench(ctx, t, bin, dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mms bench with ulimit -n 1400: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("the report does not parse: %v\n%s", err, stdout.String())
	}
	if len(rep.Rows) != 1 || rep.Rows[0].ID != "fleet-60" {
		t.Fatalf("rows %+v, want fleet-60 alone", rep.Rows)
	}
	row := rep.Rows[0]
	if row.Error != "" || row.Values["shard_processes"] < 1 || row.Values["agents"] != 60 || row.Values["all_ms"] <= 0 {
		t.Errorf("fleet-60 under a low file limit = %+v, want every agent measured with a shard process", row)
	}
	// Before each put, the shard collected its heap when asked (a shard
	// that did not answer fails the row), and the row says what share of
	// a collection its puts were charged.
	if _, ok := row.Values["collection_ms_per_agent"]; !ok || row.Values["collection_ms_per_agent"] < 0 || row.Values["collection_ms_per_agent"] > row.Values["cpu_ms_per_agent"] {
		t.Errorf("fleet-60 collection share %v of %v ms per agent, want a share of the CPU", row.Values["collection_ms_per_agent"], row.Values["cpu_ms_per_agent"])
	}
}

// testBenchShardStops runs the sharded fleet row of testBenchShards and
// kills its shard process with SIGKILL (as the kernel's OOM killer would):
// the row fails at once, saying a shard process exited, instead of
// waiting out the minute it gives the agents to converge.
func testBenchShardStops(t *testing.T, bin, dir string) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := shardedBench(ctx, t, bin, dir)
	var stdout, stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var shard int
	natstest.Eventually(t, time.Minute, func() error {
		if shard = childWith(cmd.Process.Pid, "--fleet-shard"); shard == 0 {
			return errors.New("no shard process yet")
		}
		return nil
	})
	if err := syscall.Kill(shard, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("mms bench: %v\nstderr:\n%s", err, stderr.String())
	}
	if took := time.Since(killed); took > 30*time.Second {
		t.Errorf("the bench took %v to end after its shard was killed", took)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatalf("the report does not parse: %v\n%s", err, stdout.String())
	}
	if len(rep.Rows) != 1 || !strings.Contains(rep.Rows[0].Error, "a shard process exited") || !strings.Contains(rep.Rows[0].Error, "signal: killed") {
		t.Errorf("rows = %+v, want fleet-60 failed, naming the shard process killed", rep.Rows)
	}
}

// shardedBench returns `mms bench` measuring a fleet row of 60 agents
// under an open file limit too low for one process to hold them (60 agents
// need 60*8+1024 descriptors; 1400 leaves room for 45 here), its JSON
// report on stdout.
func shardedBench(ctx context.Context, t *testing.T, bin, dir string) *exec.Cmd {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to lower the open file limit: %v", err)
	}
	return exec.CommandContext(ctx, sh, "-c", `ulimit -n 1400 && exec "$0" bench --quick --only fleet --source nats --agents 60 --json --dir "$1"`, bin, dir)
}

// childWith returns the pid of a child of ppid whose command line holds
// arg, or 0 (Linux /proc).
func childWith(ppid int, arg string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Field 4 is the parent's pid, after the command's name in parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(ppid) {
			continue
		}
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte(arg)) {
			return pid
		}
	}
	return 0
}
