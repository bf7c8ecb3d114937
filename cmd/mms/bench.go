package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/bench"
)

// benchOptions are the flags of `mms bench`.
type benchOptions struct {
	quick      bool
	json       bool
	agents     string
	only       string
	out        string
	dir        string
	fleetDir   string
	source     string
	keep       bool
	cpuProfile string
	putProfile string
	procs      int
	compare    string
	perProcess int
	shard      string // a bench.Shard (JSON): run it instead of the bench
}

func (a *app) newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure put → running, fleet convergence, installs, idle cost and spec scale on this machine",
		Long: `Measure mms on this machine, end to end, and compare each number with
its target.

The bench is self-contained: it starts its own NATS servers (embedded, on
loopback, random ports), makes a signing key, machine archives and signed
specs in a temporary directory, runs real agents and removes everything when
it ends. Rows (select groups with --only):

  put      put → running: one agent, a new version of a small machine per
           put (from --source), 50 puts one after the other: p50, p99, max
           from the KV put to the host's "loaded" event of the new version.
  fleet    fleet convergence: --agents N agents in this process, each with
           its own directories, NATS connection and identity, one server:
           from a put until each agent runs the new version (p50, p99) and
           until all do, median of 6 puts per --source (nats:// and
           http:// by default) after a warm-up put from each: one fleet
           per size, its puts alternating the sources (nats, http, http,
           nats, nats, http…), a row for each; before each put the
           web server closes the agents' http:// connections, as the
           minutes between a real fleet's puts do, and every fleet
           process collects its heap (a put is charged its share of a
           collection, not whichever collection fell on it); after
           the puts, the fleet idle for 30 s (its agents' timers and
           heartbeats). Then the slope (CPU per agent per put by fleet
           size, the largest's against the smallest's from 1,000: the
           put's own CPU, less the idle fleet's over the put's time,
           and the idle CPU per agent per second) and nats:// against
           http:// size by size, also round by round.
  cluster  the same against a 3-server cluster with R3 buckets.
  restart  the largest --agents fleet (at most 1,000; with --quick the
           smallest) on that cluster, every
           server stopped at once and started again: the time until every
           replica is current, until a new spec runs on every agent, and
           the consumers of the spec and status streams before and after.
  procs    --procs N real 'mms agent' processes (default 200), clients of
           one server: from a put until all run the new version, CPU per
           agent per put (agents and server), RSS per agent; 3 fresh
           fleets of 3 puts. --compare-agent BINARY runs another mms's
           agents (an older release) the same way, alternately, and
           compares.
  install  a ~100 MB / 2,000-file archive installed by an agent process over
           loopback http, https and nats://, first install and upgrade,
           against the shell pipeline (sha256sum -c, tar xzf, sha256sum -c,
           one sync) on the same archive in the same run. Their trees
           are deleted only at the end: a deletion loads the file system
           under whatever creates files next.
  idle     RSS and CPU share of an agent process running 100 installed
           machines (a timer and a 30 s script each), over 60 s (/proc).
  spec     opening and planning a signed spec of 1,000 and 10,000 entries;
           a spec too large to send is reported so, with the largest that
           fits.

The agents are this binary's own 'mms agent': in this process for the put
and fleet rows (thousands of processes do not fit in memory) and as child
processes for the install and idle rows, whose memory and CPU are the
agent's alone. A fleet agent holds about 6 open files and the server one
more; a fleet larger than this process's open file limit (ulimit -n) allows
runs its remaining agents in shard processes (this binary again). Every
fleet size of a run is spread over as many processes as its largest needs
(a fleet split over processes costs more CPU per agent than one in a
single process), so the slope compares like with like; each row says how
many. The bench is a subcommand of the one binary, so it always measures
the agent it ships with; its logic is in package bench.

A fleet in one process shares CPUs, a heap and disks that a real fleet does
not. The bench keeps the fleet agents' directories on a memory file system
(/dev/shm, or --fleet-dir), since every install ends with syncfs(2), which
waits for everyone's writes on that file system; and it paces the
collector at GOGC 400 while fleet rows run (fewer collections: one
collector scanning the whole fleet's heap stalls every agent at once, but
its work per agent stays independent of the fleet's size, as in a real
fleet). Before the puts, each fleet process grows its heap to the
collector's goal once, as a long-running agent's heap has grown: otherwise
the puts pay the first touch of every new page (a page fault each, which
a VM makes expensive), a cost that grows with the fleet's heap. Each fleet
row reports the CPU the bench and the machine's other processes used while
converging, and the page faults per agent per put: with 2 CPUs for 5,000
agents, CPU per agent is what the row measures. On shared CPUs a put of
N agents lasts about N times as long, and the fleet's background (each
agent's timers and heartbeats, flat per agent and second) would count N
times over per agent in it: the slope judges the put's own CPU, and the
idle CPU per agent per second apart.

A full run takes about 15 minutes and, for 5,000 agents, about 13 GB of
memory; --quick runs every row small and short (under a minute,
for CI). A progress line goes to stderr, the table (or --json) to stdout.
The bench asserts nothing: it reports each row against its target.`,
		Example: `  mms bench --quick
  mms bench --out bench.json                 # the full run, table and JSON
  mms bench --only fleet,cluster --agents 1000
  mms bench --only put --cpuprofile put.pprof   # go tool pprof put.pprof
  mms bench --only fleet --agents 1000,5000 --put-profile prof-   # prof-fleet-1000.pprof, prof-fleet-5000.pprof: the puts and the collections before them
  mms bench --only procs --procs 200 --compare-agent ./mms-v0.1   # real agent processes, this release against an older one`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.shard != "" {
				return a.benchShard(cmd.Context(), o.shard)
			}
			return a.bench(cmd.Context(), o, cmd.Flags().Changed("agents"))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "small fleets, a small archive, a short idle window: every row in under a minute")
	f.BoolVar(&o.json, "json", false, "print the report as JSON instead of the table")
	f.StringVar(&o.agents, "agents", "100,1000,5000", "fleet sizes, comma-separated (with --quick default 10,50)")
	f.StringVar(&o.only, "only", "", "row groups to run, comma-separated: "+strings.Join(bench.Groups(), ","))
	f.StringVar(&o.source, "source", bench.SourceNATS+","+bench.SourceHTTP, "where the put and fleet rows' agents download the machine: nats (an object store), http (a loopback web server), or both, comma-separated: each fleet's puts alternate them, a row per source, then a row comparing them (the put and cluster rows use the first)")
	f.StringVar(&o.out, "out", "", "also write the JSON report to `FILE`")
	f.StringVar(&o.dir, "dir", "", "make the temporary directory under `DIR` (default the system's)")
	f.StringVar(&o.fleetDir, "fleet-dir", "", "keep the fleet agents' directories under `DIR` (default /dev/shm when it exists, else --dir: see above)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary directory")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the put, fleet and spec rows) to `FILE`")
	f.StringVar(&o.putProfile, "put-profile", "", "write a CPU profile of this process covering each fleet row's puts, and the collection it makes before each, to `PREFIX`<row id>.pprof (not with --cpuprofile)")
	f.IntVar(&o.perProcess, "agents-per-process", 0, "run at most `N` fleet agents in one process, the rest in shard processes (default: every size over as many processes as the largest needs under ulimit -n)")
	f.IntVar(&o.procs, "procs", 0, "agent processes of the procs rows (default 200, with --quick 10)")
	f.StringVar(&o.compare, "compare-agent", "", "also run the procs rows with the agents of another mms `BINARY` (e.g. an older release), alternately, and compare")
	f.StringVar(&o.shard, "fleet-shard", "", "run part of a fleet for another `mms bench` (internal)")
	_ = f.MarkHidden("fleet-shard")
	return cmd
}

// bench runs the bench and prints the report.
func (a *app) bench(ctx context.Context, o benchOptions, agentsSet bool) error {
	cfg := bench.Config{
		RunAgent:         a.runAgentInProcess,
		AgentCommand:     agentProcess,
		ShardCommand:     shardProcess,
		Quick:            o.quick,
		Dir:              o.dir,
		FleetDir:         o.fleetDir,
		Source:           o.source,
		Keep:             o.keep,
		PutProfile:       o.putProfile,
		ProcAgents:       o.procs,
		AgentsPerProcess: o.perProcess,
		CompareAgent:     o.compare,
		Progress:         a.stderr,
		Terminal:         isTerminal(a.stderr),
		Version:          currentBuild().Version,
		Command:          "mms " + strings.Join(os.Args[1:], " "),
	}
	var err error
	if agentsSet || !o.quick {
		if cfg.Agents, err = parseAgents(o.agents); err != nil {
			return err
		}
	}
	if o.only != "" {
		cfg.Only = strings.Split(o.only, ",")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if o.cpuProfile != "" && o.putProfile != "" {
		return errors.New("--cpuprofile and --put-profile cannot be combined: a process has one CPU profile at a time")
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		werr := rep.WriteJSON(f)
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if o.json {
		return rep.WriteJSON(a.stdout)
	}
	return rep.WriteTable(a.stdout)
}

// parseAgents reads --agents: positive fleet sizes, comma-separated.
func parseAgents(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--agents %q: %q is not a positive number of agents", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// runAgentInProcess runs `mms agent args` in this process until ctx is
// done: the agent exactly as the command runs it.
func (a *app) runAgentInProcess(ctx context.Context, args []string, stderr io.Writer) error {
	if code := run(ctx, append([]string{"agent"}, args...), strings.NewReader(""), io.Discard, stderr); code != 0 {
		return fmt.Errorf("mms agent exited with status %d", code)
	}
	return nil
}

// benchShard runs the part of a fleet that shard (a JSON bench.Shard)
// names, for the `mms bench` that started this process, until it is
// told to stop (SIGTERM).
func (a *app) benchShard(ctx context.Context, shard string) error {
	var s bench.Shard
	if err := json.Unmarshal([]byte(shard), &s); err != nil {
		return fmt.Errorf("--fleet-shard: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	return bench.RunShard(ctx, s, a.runAgentInProcess)
}

// shardProcess is the command of a process running part of a fleet for
// `mms bench`: this binary.
func shardProcess(ctx context.Context, shard string) *exec.Cmd {
	return selfProcess(ctx, 2*time.Minute, "bench", "--fleet-shard", shard)
}

// agentProcess is the command of an `mms agent args` process: this binary.
func agentProcess(ctx context.Context, args []string) *exec.Cmd {
	return selfProcess(ctx, 30*time.Second, append([]string{"agent"}, args...)...)
}

// selfProcess is the command running this binary with args, sent SIGTERM
// when ctx is done and given waitDelay to exit.
func selfProcess(ctx context.Context, waitDelay time.Duration, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = waitDelay
	return cmd
}
