// Package bench is `mms bench`: it measures a node and a fleet end to end on
// this machine, self-contained. It starts its own embedded NATS server (and a
// three-server cluster), generates keys, archives and signed specs in a
// temporary directory, runs real agents, and times what an operator sees:
//
//   - put → running: one agent, a new version of a small machine per put,
//     from the KV put to the host's "loaded" event of that version;
//   - fleet convergence: N agents in this process, each with its own
//     directories, NATS connection and identity, from one put until every
//     agent runs the new version, on one server and on a three-server
//     cluster with R3 buckets;
//   - cluster restart: the three servers stopped at once under a fleet and
//     started again: how long until they are back, until a new spec
//     reaches every agent, and the consumers before and after;
//   - install throughput: a ~100 MB / 2,000-file archive (internal/benchtree)
//     over loopback HTTP, HTTPS and nats://, first install and upgrade, by a
//     real agent process, against the shell pipeline (sha256sum, tar xzf,
//     sha256sum -c, sync) on the same archive in the same run;
//   - idle cost: RSS and CPU share of a real agent process running 100
//     installed machines;
//   - spec scale: opening and planning a large signed spec.
//
// The agents are the mms agent itself: the caller hands Run a function that
// runs `mms agent ARGS` in this process (Config.RunAgent) and one that
// builds the command of an agent process (Config.AgentCommand), so the bench
// assembles no node of its own and follows every change to the agent.
//
// Nothing here asserts a time: Run returns the numbers, each row with the
// target it is compared with and whether it met it.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Row group names, for Config.Only.
const (
	GroupPut     = "put"
	GroupFleet   = "fleet"
	GroupCluster = "cluster"
	GroupRestart = "restart"
	GroupProcs   = "procs"
	GroupInstall = "install"
	GroupIdle    = "idle"
	GroupSpec    = "spec"
)

// Archive sources of the put and fleet rows, for Config.Source.
const (
	SourceNATS = "nats"
	SourceHTTP = "http"
)

// Groups lists every row group in the order Run measures them.
func Groups() []string {
	return []string{GroupPut, GroupFleet, GroupCluster, GroupRestart, GroupProcs, GroupInstall, GroupIdle, GroupSpec}
}

// DefaultAgents are the fleet sizes of a full run.
func DefaultAgents() []int { return []int{100, 1000, 5000} }

// QuickAgents are the fleet sizes of a quick run.
func QuickAgents() []int { return []int{10, 50} }

// Config says what to measure and how to run agents.
type Config struct {
	// RunAgent runs `mms agent` with args in this process until ctx is
	// done, writing its diagnostics to stderr. Required for the put and
	// fleet rows.
	RunAgent func(ctx context.Context, args []string, stderr io.Writer) error
	// AgentCommand returns the command of an `mms agent` process with
	// args. Required for the install and idle rows.
	AgentCommand func(ctx context.Context, args []string) *exec.Cmd
	// ShardCommand returns the command of a process running part of a
	// fleet too large for this process's open file limit: this binary's
	// `mms bench` calling RunShard with shard, a JSON Shard. Nil runs
	// every fleet in this process, as far as the limit allows.
	ShardCommand func(ctx context.Context, shard string) *exec.Cmd
	// Quick makes every row small and short (small fleets, a small
	// archive, a short idle window), for CI.
	Quick bool
	// Agents are the fleet sizes; nil means DefaultAgents, or QuickAgents
	// when Quick.
	Agents []int
	// AgentsPerProcess caps the fleet agents one process runs (0: as many
	// as its open file limit allows); the rest run in shard processes. A
	// cap makes every fleet size run the same number of agents per
	// process, so that what grows with the fleet is not the process.
	AgentsPerProcess int
	// ProcAgents is how many agent processes the procs rows run; 0 means
	// 200 (10 when Quick).
	ProcAgents int
	// CompareAgent, when set, is another mms binary (an older release)
	// whose agent the procs rows run too, alternately with this one's, and
	// compare.
	CompareAgent string
	// Source is where the put and fleet rows' agents download the small
	// machine from: SourceNATS (a JetStream object store on the bench's
	// server) or SourceHTTP (a web server on loopback), or both
	// comma-separated ("nats,http", the default): each fleet row is then
	// measured once per source, followed by a row comparing them; the put
	// and cluster rows use the first.
	Source string
	// Only lists the row groups to run (see Groups); nil runs all.
	Only []string
	// Dir is where the temporary directory is made; "" means os.TempDir.
	Dir string
	// FleetDir is where the fleet rows' agents keep their directories;
	// "" means a memory file system (/dev/shm) when there is one, else
	// Dir. Agents that share one disk wait for each other's flushes
	// (every install ends with syncfs(2)), which nodes of a real fleet,
	// each with its own disk, do not.
	FleetDir string
	// Keep keeps the temporary directory.
	Keep bool
	// PutProfile, when set, makes each fleet row write a CPU profile of
	// this process covering its puts (from the first put until the last
	// one converged, the settling between them included) to
	// PutProfile+"<row id>.pprof", e.g. "prof-" gives prof-fleet-1000.pprof.
	// The process must not be profiled otherwise.
	PutProfile string
	// Progress receives a progress line while the bench runs; nil
	// discards it. Terminal says it is a terminal (the line is redrawn
	// in place); otherwise each step gets its own line.
	Progress io.Writer
	Terminal bool
	// Version is the mms version reported.
	Version string
	// Command is the command line reported, for the record.
	Command string
}

// Validate reports every problem of cfg at once.
func (c Config) Validate() error {
	var errs []error
	for _, g := range c.Only {
		if !slices.Contains(Groups(), g) {
			errs = append(errs, fmt.Errorf("row group %q: want one of %s", g, strings.Join(Groups(), ", ")))
		}
	}
	seen := map[string]bool{}
	for _, src := range c.sources() {
		switch {
		case src != SourceNATS && src != SourceHTTP:
			errs = append(errs, fmt.Errorf("source %q: want %s, %s or both, comma-separated", src, SourceNATS, SourceHTTP))
		case seen[src]:
			errs = append(errs, fmt.Errorf("source %q given twice", src))
		}
		seen[src] = true
	}
	if c.AgentsPerProcess < 0 {
		errs = append(errs, fmt.Errorf("agents per process %d: want 0 (no cap) or more", c.AgentsPerProcess))
	}
	for _, n := range c.Agents {
		if n < 1 {
			errs = append(errs, fmt.Errorf("fleet size %d: want at least 1", n))
		}
	}
	if c.runs(GroupPut) || c.runs(GroupFleet) || c.runs(GroupCluster) || c.runs(GroupRestart) {
		if c.RunAgent == nil {
			errs = append(errs, errors.New("the put and fleet rows need RunAgent"))
		}
	}
	if (c.runs(GroupInstall) || c.runs(GroupIdle) || c.runs(GroupProcs)) && c.AgentCommand == nil {
		errs = append(errs, errors.New("the procs, install and idle rows need AgentCommand"))
	}
	if c.CompareAgent != "" {
		if _, err := exec.LookPath(c.CompareAgent); err != nil {
			errs = append(errs, fmt.Errorf("compare agent: %w", err))
		}
	}
	return errors.Join(errs...)
}

// runs reports whether group is measured.
func (c Config) runs(group string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, group)
}

// sources returns the fleet rows' archive sources, the first also the
// put and cluster rows'.
func (c Config) sources() []string {
	return strings.Split(cmp.Or(c.Source, SourceNATS+","+SourceHTTP), ",")
}

// source returns the put and cluster rows' archive source.
func (c Config) source() string { return c.sources()[0] }

// agents returns the fleet sizes to measure.
func (c Config) agents() []int {
	switch {
	case len(c.Agents) > 0:
		return c.Agents
	case c.Quick:
		return QuickAgents()
	}
	return DefaultAgents()
}

// Run measures every row cfg selects and returns the report. A row that
// fails carries its error and the others still run; Run itself fails only
// when cfg is invalid, the environment cannot be set up or ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(cfg.Dir, "mms-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: make the temporary directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(root)
	}
	prog := newProgress(cfg.Progress, cfg.Terminal)
	defer prog.done()
	b := &bench{cfg: cfg, root: root, prog: prog, fleetRoot: root}
	if fd := cfg.FleetDir; fd != "" || cfg.runs(GroupFleet) || cfg.runs(GroupCluster) || cfg.runs(GroupRestart) {
		fd = cmp.Or(fd, memFS(), root)
		if b.fleetRoot, err = os.MkdirTemp(fd, "mms-bench-fleet-"); err != nil {
			return nil, fmt.Errorf("bench: make the fleet's directory: %w", err)
		}
		if !cfg.Keep {
			defer os.RemoveAll(b.fleetRoot)
		}
	}
	if b.keys, err = newKeys(); err != nil {
		return nil, err
	}

	rep := newReport(cfg)
	steps := []struct {
		group string
		run   func(context.Context) []Row
	}{
		{GroupPut, b.putRows},
		{GroupFleet, func(ctx context.Context) []Row { return b.fleetRows(ctx, false) }},
		{GroupCluster, func(ctx context.Context) []Row { return b.fleetRows(ctx, true) }},
		{GroupRestart, b.restartRows},
		{GroupProcs, b.procsRows},
		{GroupInstall, b.installRows},
		{GroupIdle, b.idleRows},
		{GroupSpec, b.specRows},
	}
	for _, s := range steps {
		if !cfg.runs(s.group) {
			continue
		}
		rows := s.run(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bench: %w", context.Cause(ctx))
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	rep.Elapsed = Seconds(time.Since(rep.Started).Seconds())
	rep.LoadEnd = loadAverage()
	return rep, nil
}

// bench is one run's shared state.
type bench struct {
	cfg  Config
	root string
	// fleetRoot holds the fleet agents' directories (see Config.FleetDir).
	fleetRoot string
	prog      *progress
	keys      keys
	n         int // names temporary directories
}

// dir returns a new directory under the run's root.
func (b *bench) dir(prefix string) (string, error) {
	b.n++
	d := filepath.Join(b.root, fmt.Sprintf("%s-%d", prefix, b.n))
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return d, nil
}

// memFS returns /dev/shm when it is a directory this process can write
// to (a memory file system on Linux), else "".
func memFS() string {
	const shm = "/dev/shm"
	d, err := os.MkdirTemp(shm, "mms-bench-probe-")
	if err != nil {
		return ""
	}
	os.Remove(d)
	return shm
}

// cpus is the number of CPUs Go uses.
func cpus() int { return runtime.GOMAXPROCS(0) }
