package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/spec"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    time.Duration
		wantErr string
	}{
		{
			name: "agent",
			line: "4242 (mms) S 1 4242 4242 0 -1 4194560 5120 0 0 0 150 37 3 4 20 0 12 0 99 1000 2000",
			want: 1870 * time.Millisecond,
		},
		{
			name: "command name with spaces and parentheses",
			line: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 10 20",
			want: 30 * time.Millisecond,
		},
		{name: "no command name", line: "7 a R 1", wantErr: "without a command name"},
		{name: "short", line: "7 (a) R 1 7 7", wantErr: "want at least 13"},
		{name: "not a number", line: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 2 0 0", wantErr: `"x" is not a count`},
		{name: "negative", line: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 -5 2 0 0", wantErr: `"-5" is not a count`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStatCPU() = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStatCPU() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestStatFaults(t *testing.T) {
	line := []byte("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 5120 0 0 0 150 37 3 4 20 0 12 0 99 1000 2000")
	if got, err := statFieldsSum(line, 10, 10); err != nil || got != 5120 {
		t.Fatalf("minor faults = %d, %v; want 5120", got, err)
	}
	if _, err := statFieldsSum([]byte("7 (a) R 1 7 7"), 10, 10); err == nil || !strings.Contains(err.Error(), "want at least 8") {
		t.Fatalf("short line: err = %v, want one saying it wants at least 8 fields", err)
	}
	if u, err := procUsage(os.Getpid()); runtime.GOOS == "linux" && (err != nil || u.faults <= 0) {
		t.Fatalf("procUsage(self) = %+v, %v; want a positive count of faults", u, err)
	}
}

func TestParseKB(t *testing.T) {
	status := []byte("Name:\tmms\nVmHWM:\t   41000 kB\nVmRSS:\t   38912 kB\nThreads:\t12\n")
	tests := []struct {
		name, field string
		want        int64
		wantErr     string
	}{
		{name: "rss", field: "VmRSS", want: 38912 << 10},
		{name: "peak", field: "VmHWM", want: 41000 << 10},
		{name: "missing", field: "VmSwap", wantErr: "no VmSwap line"},
		{name: "no unit", field: "Threads", wantErr: `"12" is not "N kB"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKB(status, tt.field)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseKB(%s) = %v, %v; want an error containing %q", tt.field, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseKB(%s) = %v, %v; want %v", tt.field, got, err, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tt := range []struct {
		p    int
		want time.Duration
	}{{0, 1}, {50, 5}, {90, 9}, {99, 10}, {100, 10}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(%d) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if ds[0] != 5 {
		t.Errorf("percentile sorted its input: %v", ds)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{1234 * time.Microsecond, "1.23 ms"},
		{12345 * time.Microsecond, "12.3 ms"},
		{123456 * time.Microsecond, "123 ms"},
		{1234567 * time.Microsecond, "1.23 s"},
		{12345678 * time.Microsecond, "12.3 s"},
	} {
		if got := ms(tt.d); got != tt.want {
			t.Errorf("ms(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	for n, want := range map[int]string{7: "7", 100: "100", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Only: []string{"put", "fleets", "procs"}, Agents: []int{10, 0}, Source: "nats,ftp,nats", CompareAgent: "/nonexistent/mms"}
	err := cfg.Validate()
	for _, want := range []string{`row group "fleets"`, "fleet size 0", `source "ftp"`, `source "nats" given twice`, "need RunAgent",
		"the procs, install and idle rows need AgentCommand", "compare agent:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to say %q", err, want)
		}
	}
	if err := (Config{Only: []string{GroupSpec}}).Validate(); err != nil {
		t.Errorf("Validate() of the spec rows alone = %v; they need no agents", err)
	}
}

func TestReportOutput(t *testing.T) {
	rep := &Report{Version: "dev", OS: "linux", Arch: "amd64", CPUs: 2, Go: "go1", Rows: []Row{
		{ID: "put", Name: "put → running", Result: "p50 12 ms", Target: "p50 ≤ 50 ms", Values: map[string]float64{"p50_ms": 12}},
		{ID: "fleet-10", Name: "fleet of 10", Result: "all 3 s", Target: "all ≤ 2 s"},
		{ID: "spec-1000", Name: "open + plan", Result: "error", Error: "boom"},
		{ID: "fleet-sources", Name: "nats vs http", Result: "×+Inf", Values: map[string]float64{"all_ratio_10": math.Inf(1), "cpu_ratio_10": math.NaN(), "agents": 10}},
	}}
	rep.Rows[0].judge(true)
	rep.Rows[1].judge(false)
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"put → running", "yes", "fleet of 10", "NO", "open + plan", "spec-1000: error: boom"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var out bytes.Buffer
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("the JSON does not parse back: %v\n%s", err, out.String())
	}
	if got := back.Rows[3]; !slices.Equal(got.Undefined, []string{"all_ratio_10", "cpu_ratio_10"}) || len(got.Values) != 1 || got.Values["agents"] != 10 {
		t.Errorf("a row with an infinite and a NaN value came back as %+v, want them listed in undefined", got)
	}
	if !math.IsInf(rep.Rows[3].Values["all_ratio_10"], 1) {
		t.Error("WriteJSON changed the report it wrote")
	}
	if len(back.Rows) != 4 || back.Rows[0].Met == nil || !*back.Rows[0].Met || back.Rows[2].Met != nil || back.Rows[0].Values["p50_ms"] != 12 {
		t.Errorf("rows after a JSON round trip = %+v", back.Rows)
	}
}

func TestSlopeRow(t *testing.T) {
	fleet := func(n int, ms float64) Row {
		return Row{ID: fmt.Sprintf("fleet-%d", n), Values: map[string]float64{"agents": float64(n), "cpu_ms_per_agent": ms}}
	}
	idled := func(n int, all, own, idle float64) Row {
		return Row{ID: fmt.Sprintf("fleet-%d", n), Values: map[string]float64{
			"agents": float64(n), "cpu_ms_per_agent": all, "put_cpu_ms_per_agent": own, "idle_ms_per_agent_s": idle}}
	}
	tests := []struct {
		name       string
		rows       []Row
		wantResult string
		wantMet    bool
		wantRatio  float64
	}{
		{"flat from 1,000", []Row{fleet(100, 9), fleet(1000, 3), fleet(5000, 3.3)},
			"100: 9.00 ms, 1,000: 3.00 ms, 5,000: 3.30 ms; 1,000 → 5,000: ×1.10", true, 1.1},
		{"grows", []Row{fleet(1000, 3), fleet(2000, 3.2), fleet(5000, 4.5)},
			"1,000: 3.00 ms, 2,000: 3.20 ms, 5,000: 4.50 ms; 1,000 → 5,000: ×1.50", false, 1.5},
		{"flat but too dear", []Row{fleet(1000, 5), fleet(5000, 5)},
			"1,000: 5.00 ms, 5,000: 5.00 ms; 1,000 → 5,000: ×1.00", false, 1},
		{"small fleets only", []Row{fleet(10, 4), fleet(50, 2)},
			"10: 4.00 ms, 50: 2.00 ms; 10 → 50: ×0.50", false, 0.5},
		{"a failed row is left out", []Row{fleet(1000, 3), {ID: "fleet-2000", Error: "x", Values: map[string]float64{"agents": 2000, "cpu_ms_per_agent": 9}}, fleet(5000, 3)},
			"1,000: 3.00 ms, 5,000: 3.00 ms; 1,000 → 5,000: ×1.00", true, 1},
		// Fleets measured idle too: judged on the put's own CPU and on the
		// idle CPU per agent and second, not on the CPU with the
		// background, of which a longer put counts more.
		{"the put's own is flat, with the background it grows",
			[]Row{idled(1000, 1.3, 1.27, 0.05), idled(5000, 1.6, 1.4, 0.045)},
			"the put's own 1,000: 1.27 ms, 5,000: 1.40 ms; 1,000 → 5,000: ×1.10; with the fleet's background over the put's time 1.30 / 1.60 ms (×1.23); idle 0.050 / 0.045 ms per agent per second (×0.90)",
			true, 1.4 / 1.27},
		{"the idle fleet's CPU per agent grows",
			[]Row{idled(1000, 1.3, 1.27, 0.05), idled(5000, 1.6, 1.3, 0.07)},
			"the put's own 1,000: 1.27 ms, 5,000: 1.30 ms; 1,000 → 5,000: ×1.02; with the fleet's background over the put's time 1.30 / 1.60 ms (×1.23); idle 0.050 / 0.070 ms per agent per second (×1.40)",
			false, 1.3 / 1.27},
		{"the put's own grows",
			[]Row{idled(1000, 1.3, 1.27, 0.05), idled(5000, 1.8, 1.6, 0.05)},
			"the put's own 1,000: 1.27 ms, 5,000: 1.60 ms; 1,000 → 5,000: ×1.26; with the fleet's background over the put's time 1.30 / 1.80 ms (×1.38); idle 0.050 / 0.050 ms per agent per second (×1.00)",
			false, 1.6 / 1.27},
		{"a row not measured idle: the CPU with the background, as measured",
			[]Row{idled(1000, 1.3, 1.27, 0.05), {ID: "fleet-5000", Values: map[string]float64{"agents": 5000, "cpu_ms_per_agent": 1.5}}},
			"1,000: 1.30 ms, 5,000: 1.50 ms; 1,000 → 5,000: ×1.15",
			true, 1.5 / 1.3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := slopeRow(tt.rows, false, SourceNATS)
			if !ok {
				t.Fatal("no slope row")
			}
			if r.Result != tt.wantResult || r.Met == nil || *r.Met != tt.wantMet || math.Abs(r.Values["ratio"]-tt.wantRatio) > 1e-9 {
				t.Errorf("slope row = %q met %v ratio %v, want %q met %v ratio %v", r.Result, r.Met, r.Values["ratio"], tt.wantResult, tt.wantMet, tt.wantRatio)
			}
		})
	}
	if _, ok := slopeRow([]Row{fleet(1000, 3)}, false, SourceNATS); ok {
		t.Error("a slope row from one fleet size")
	}
}

// TestFleetRowLessTheBackground checks the fleet row's share of the idle
// fleet's CPU: the idle CPU per agent and second times a put's mean wall
// time, taken from the CPU per agent per put.
func TestFleetRowLessTheBackground(t *testing.T) {
	b := &bench{}
	st := &putStats{all: []time.Duration{time.Second, 3 * time.Second}, times: []time.Duration{time.Second, 3 * time.Second},
		cpu: 400 * time.Millisecond, wall: 4 * time.Second}
	res := fleetResult{by: map[string]*putStats{SourceNATS: st}, idleCPU: 50 * time.Millisecond, idleWall: 10 * time.Second}
	r := b.fleetRow(100, false, SourceNATS, false, res, nil)
	// 400 ms over 100 agents and 2 puts: 2 ms per agent per put; idle,
	// 50 ms over 10 s and 100 agents: 0.05 ms per agent per second, over
	// a put's mean 2 s: 0.1 ms.
	for key, want := range map[string]float64{"cpu_ms_per_agent": 2, "idle_ms_per_agent_s": 0.05, "background_ms_per_agent": 0.1, "put_cpu_ms_per_agent": 1.9} {
		if got, ok := r.Values[key]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if !strings.Contains(r.Note, "the put's own CPU is 1.90 ms per agent") {
		t.Errorf("the note does not give the put's own CPU: %s", r.Note)
	}
	res.idleCPU, res.idleWall = 0, 0
	r = b.fleetRow(100, false, SourceNATS, false, res, nil)
	if _, ok := r.Values["put_cpu_ms_per_agent"]; ok {
		t.Errorf("a fleet not measured idle has the put's own CPU: %v", r.Values)
	}
}

func TestSourcesRow(t *testing.T) {
	fleet := func(n int, allMs, cpu float64) Row {
		return Row{Values: map[string]float64{"agents": float64(n), "all_ms": allMs, "cpu_ms_per_agent": cpu}}
	}
	r, ok := sourcesRow([]Row{fleet(1000, 900, 2), fleet(5000, 5000, 2.5)}, []Row{fleet(1000, 1000, 2.2), fleet(5000, 4000, 2.4)})
	if !ok {
		t.Fatal("no row")
	}
	want := "1,000: all 900 ms vs 1.00 s (×0.90), 2.00 vs 2.20 ms CPU per agent; 5,000: all 5.00 s vs 4.00 s (×1.25), 2.50 vs 2.40 ms CPU per agent"
	if r.Result != want || r.Met == nil || *r.Met || r.Values["all_ratio_5000"] != 1.25 {
		t.Errorf("sourcesRow = %q met %v, want %q, not met (nats slower at 5,000)", r.Result, r.Met, want)
	}
	if strings.Contains(r.Result, "round by round") {
		t.Errorf("sourcesRow = %q: rounds of rows without them", r.Result)
	}

	// The rounds of a fleet whose puts alternated: the k-th puts of
	// each source are a round.
	res := fleetResult{by: map[string]*putStats{
		SourceNATS: {all: []time.Duration{900, 1100, 1000, 1300}},
		SourceHTTP: {all: []time.Duration{1000, 1000, 1000, 1000}},
	}}
	nats := fleet(2000, 1050, 2)
	pairRounds(nats, res)
	r, _ = sourcesRow([]Row{nats}, []Row{fleet(2000, 1000, 2)})
	want = "2,000: all 1.05 s vs 1.00 s (×1.05), 2.00 vs 2.00 ms CPU per agent, round by round ×1.05 (nats:// no slower in 2 of 4)"
	if r.Result != want || math.Abs(r.Values["paired_ratio_2000"]-1.05) > 1e-9 {
		t.Errorf("sourcesRow = %q, paired_ratio_2000 %v, want %q, 1.05", r.Result, r.Values["paired_ratio_2000"], want)
	}
	if _, ok := sourcesRow([]Row{fleet(1000, 900, 2)}, nil); ok {
		t.Error("a comparison without http rows")
	}
}

// TestSelfCPUIsFinerThanTicks: the bench's own CPU time moves in steps
// far below /proc's 10 ms ticks, so a quick row's few milliseconds of
// work are not measured as zero.
func TestSelfCPUIsFinerThanTicks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("getrusage's precision is Linux's")
	}
	start := selfCPU()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if d := selfCPU() - start; d > 0 {
			if d >= 5*time.Millisecond {
				t.Errorf("the first change of selfCPU was %v, want well under a 10ms tick", d)
			}
			return
		}
	}
	t.Fatal("selfCPU did not change in 5 s of busy polling")
}

// TestWarmHeap checks that warmHeap leaves the pages it touched with the
// heap, so that what a fleet row's puts allocate next lands on pages the
// process has already touched instead of faulting new ones in.
func TestWarmHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(fleetGCPercent))
	live := make([][]byte, 32) // 32 MiB live: the goal is five times the live heap
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	warmed := warmHeap()
	if warmed < 64<<20 {
		t.Fatalf("warmHeap warmed %d MiB with 32 MiB live at GOGC %d; want at least 64 MiB", warmed>>20, fleetGCPercent)
	}
	if free := heapFree(); free < warmed/2 {
		t.Fatalf("after warming %d MiB the heap keeps %d MiB free: the pages went back to the system", warmed>>20, free>>20)
	}
	// Allocating half of it again touches pages the heap holds already.
	const size = 64 << 10
	page := os.Getpagesize()
	pages := int64(warmed / 2 / uint64(page))
	faults0 := selfUsage().faults
	var again [][]byte
	for n := uint64(0); n < warmed/2; n += size {
		b := make([]byte, size)
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		again = append(again, b)
	}
	if faults := selfUsage().faults - faults0; faults > pages/4 && !raceEnabled {
		t.Errorf("allocating %d MiB after warming took %d page faults for its %d pages; want at most a quarter", warmed>>21, faults, pages)
	}
	runtime.KeepAlive(live)
	runtime.KeepAlive(again)
}

// heapFree is the heap's memory that is free but still backed by physical
// memory.
func heapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestQuiesceWaitsForEveryProcess checks that quiesce waits for each other
// process of a row (a shard warming its heap) and not only for this one.
func TestQuiesceWaitsForEveryProcess(t *testing.T) {
	var calls int
	busyShard := func() time.Duration {
		calls++
		if calls <= 4 { // busy for the first two windows (two reads each)
			return time.Duration(calls) * time.Second
		}
		return 4 * time.Second
	}
	start := time.Now()
	if !quiesce(t.Context(), time.Minute, busyShard) {
		t.Fatal("quiesce returned false with a live context")
	}
	if calls < 6 {
		t.Fatalf("quiesce returned after reading the shard's CPU %d times (%v); want it to wait until the shard was idle for a window (6 reads)", calls, time.Since(start))
	}
}

// TestFleetSplitSpreadsOverTheLayout checks that a fleet row spreads its
// agents over the processes the run's largest fleet needs, as evenly as
// this process allows, and that --agents-per-process overrides it.
func TestFleetSplitSpreadsOverTheLayout(t *testing.T) {
	if n, err := fleetLayout(100, SourceNATS, 0); err != nil || n != 1 {
		t.Fatalf("fleetLayout(100) = %d, %v; want 1 process", n, err)
	}
	tests := []struct {
		name                  string
		n, perProcess, procs  int
		wantLocal, wantShards int
	}{
		{name: "one process", n: 100, procs: 1, wantLocal: 100, wantShards: 0},
		{name: "three processes", n: 100, procs: 3, wantLocal: 34, wantShards: 2},
		{name: "three processes, even", n: 99, procs: 3, wantLocal: 33, wantShards: 2},
		{name: "per process wins", n: 100, perProcess: 40, procs: 3, wantLocal: 40, wantShards: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, perShard, err := fleetSplit(tt.n, SourceNATS, tt.perProcess, tt.procs)
			if err != nil {
				t.Fatal(err)
			}
			shards := 0
			if tt.n > local {
				shards = ceilDiv(tt.n-local, perShard)
			}
			if local != tt.wantLocal || shards != tt.wantShards {
				t.Fatalf("fleetSplit(%d, per process %d, %d processes) = %d here and %d shards of %d; want %d here and %d shards",
					tt.n, tt.perProcess, tt.procs, local, shards, perShard, tt.wantLocal, tt.wantShards)
			}
		})
	}
}

// TestPutSourceAlternates: a fleet that compares sources installs from the
// first, warms each up once, then takes them in turn, reversed every other
// cycle, so that each source has as many early puts as late ones.
func TestPutSourceAlternates(t *testing.T) {
	two := []string{SourceNATS, SourceHTTP}
	var got []string
	for k := range 9 {
		got = append(got, putSource(two, k))
	}
	want := []string{"nats", "nats", "http", "nats", "http", "http", "nats", "nats", "http"}
	if !slices.Equal(got, want) {
		t.Errorf("putSource(nats, http; 0..8) = %v, want %v", got, want)
	}
	for k := range 4 {
		if got := putSource([]string{SourceHTTP}, k); got != SourceHTTP {
			t.Errorf("putSource(http; %d) = %s, want http", k, got)
		}
	}
}

// testWebVersions publishes versions 0..n of web from sources (see
// webVersions) on a server of its own, both stopped when t ends.
func testWebVersions(t *testing.T, n int, sources []string) ([]spec.Machine, *webServer) {
	t.Helper()
	b := &bench{root: t.TempDir()}
	env, err := startNATS(t.Context(), t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.close)
	versions, web, err := b.webVersions(t.Context(), env, n, sources)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(web.Close)
	return versions, web
}

// TestWebVersionsAlternateSources: each version of an alternating fleet is
// published where its source says, and the web server serves it.
func TestWebVersionsAlternateSources(t *testing.T) {
	sources := []string{SourceNATS, SourceHTTP}
	versions, _ := testWebVersions(t, 4, sources)
	if len(versions) != 5 {
		t.Fatalf("webVersions(4) made %d versions, want 5", len(versions))
	}
	for k, v := range versions {
		object := fmt.Sprintf("web-%s.tar.gz", webVersion(k))
		switch putSource(sources, k) {
		case SourceNATS:
			if want := "nats://" + archiveBucket + "/" + object; v.Source != want {
				t.Errorf("version %d source = %s, want %s", k, v.Source, want)
			}
		case SourceHTTP:
			if !strings.HasPrefix(v.Source, "http://127.0.0.1:") || !strings.HasSuffix(v.Source, "/"+object) {
				t.Errorf("version %d source = %s, want the loopback web server's /%s", k, v.Source, object)
				continue
			}
			resp, err := http.Get(v.Source)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if sum := sha256.Sum256(data); err != nil || resp.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != v.Checksum {
				t.Errorf("GET version %d: %s, %d bytes, %v; want the archive its entry pins", k, resp.Status, len(data), err)
			}
		}
	}
}

// TestWebServerDropConnections: after DropConnections, an agent's next
// download opens a new connection, as after a real interval between
// puts; without it, the connection of the last download is reused.
func TestWebServerDropConnections(t *testing.T) {
	versions, web := testWebVersions(t, 1, []string{SourceHTTP})
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	reused := func() bool {
		t.Helper()
		var got bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, versions[1].Source, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return got
	}
	reused()
	if !reused() {
		t.Fatal("a second download right after the first opened a new connection; want the idle one reused")
	}
	web.DropConnections()
	// The client learns that the server closed its idle connection when
	// its read loop sees EOF, soon after: until then a request may still
	// pick it and fail, which net/http retries on a new connection.
	natstest.Eventually(t, 10*time.Second, func() error {
		if reused() {
			return errors.New("the download after DropConnections reused a connection")
		}
		return nil
	})
	var none *webServer // every version in the object store
	none.DropConnections()
	none.Close()
}

// TestShellPipelineLeavesItsTreeForLater: with a graveyard, the shell
// pipeline's tree stays until the graveyard is cleared, so deleting it does
// not load the file system under the next measurement.
func TestShellPipelineLeavesItsTreeForLater(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree", bigName)
	total, err := bigTree(tree, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, err := bigArchive(t.Context(), tree, total, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var later graveyard
	p, err := newShellPipeline(dir, a, &later)
	if err != nil {
		t.Skip(err)
	}
	if _, err := p.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(dir, "shell-1", bigName, "machine.yaml")
	if _, err := os.Stat(installed); err != nil {
		t.Fatalf("the shell's tree is gone before the graveyard is cleared: %v", err)
	}
	later.clear()
	if _, err := os.Stat(filepath.Join(dir, "shell-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat after clear = %v, want the tree deleted", err)
	}
}
