package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/nodestatus"
	kvwatcher "github.com/mms-io/mms/watchers/kv"
)

// fleetRows measures fleet convergence for every fleet size, on one server
// or on a three-server cluster. With several sources (nats and http), each
// fleet serves them all: its puts alternate the source (see putSource), so
// the rows of the sources compare the same agents, heap and disk.
func (b *bench) fleetRows(ctx context.Context, cluster bool) []Row {
	sources := b.cfg.sources()
	if cluster {
		sources = sources[:1]
	}
	// One layout for every row, the one the largest fleet needs: sizes
	// compare like with like. (An error leaves it to each row to report.)
	processes, _ := fleetLayout(slices.Max(b.cfg.agents()), fdSource(sources), b.cfg.AgentsPerProcess)
	var rows []Row
	bySource := map[string][]Row{}
	for _, n := range b.cfg.agents() {
		for i, r := range b.fleetRows1(ctx, n, cluster, sources, processes) {
			rows = append(rows, r)
			bySource[sources[i]] = append(bySource[sources[i]], r)
		}
		if ctx.Err() != nil {
			return rows
		}
	}
	for _, src := range sources {
		if slope, ok := slopeRow(bySource[src], cluster, src); ok {
			rows = append(rows, slope)
		}
	}
	if vs, ok := sourcesRow(bySource[SourceNATS], bySource[SourceHTTP]); ok && !cluster {
		rows = append(rows, vs)
	}
	return rows
}

// sourcesRow compares the fleet rows of the two sources, size by size:
// the time until every agent ran a put's version and the CPU per agent
// per put, nats:// against http://. nats:// is to be at least as fast.
func sourcesRow(nats, http []Row) (Row, bool) {
	httpBy := map[float64]Row{}
	for _, r := range http {
		if r.Error == "" {
			httpBy[r.Values["agents"]] = r
		}
	}
	var parts []string
	values := map[string]float64{}
	met := true
	for _, r := range nats {
		h, ok := httpBy[r.Values["agents"]]
		if !ok || r.Error != "" {
			continue
		}
		n := int(r.Values["agents"])
		ratio := r.Values["all_ms"] / h.Values["all_ms"]
		part := fmt.Sprintf("%s: all %s vs %s (×%.2f), %.2f vs %.2f ms CPU per agent",
			thousands(n), ms(time.Duration(r.Values["all_ms"]*float64(time.Millisecond))), ms(time.Duration(h.Values["all_ms"]*float64(time.Millisecond))),
			ratio, r.Values["cpu_ms_per_agent"], h.Values["cpu_ms_per_agent"])
		if rounds := r.Values["paired_rounds"]; rounds > 0 {
			part += fmt.Sprintf(", round by round ×%.2f (nats:// no slower in %.0f of %.0f)", r.Values["paired_ratio_median"], r.Values["paired_nats_faster"], rounds)
			values[fmt.Sprintf("paired_ratio_%d", n)] = r.Values["paired_ratio_median"]
		}
		parts = append(parts, part)
		values[fmt.Sprintf("all_ratio_%d", n)] = ratio
		values[fmt.Sprintf("cpu_ratio_%d", n)] = r.Values["cpu_ms_per_agent"] / h.Values["cpu_ms_per_agent"]
		met = met && ratio <= 1
	}
	if len(parts) == 0 {
		return Row{}, false
	}
	r := Row{
		ID: "fleet-nats-vs-http", Group: GroupFleet, Name: "fleet, nats:// against http:// (the same fleets, puts alternating the source)",
		Result: strings.Join(parts, "; "), Values: values, Target: "nats:// all ≤ http:// all",
		Note: "\"all\" is the median time from a put until every agent ran its version (the fleet rows'); ×ratio = nats:// / http://; " +
			"each fleet's puts alternate the two sources (nats, http, http, nats, nats, http), so both are measured on the same agents; " +
			"\"round by round\" is the median of the ratios of each round's two puts, made one after the other, and in how many rounds nats:// reached every agent no later than http:// " +
			"(it shows how much of a ratio is the run's noise; the target is judged on the medians)",
	}
	r.judge(met)
	return r, true
}

// Targets of the slope row: the CPU an agent costs per put may vary by
// at most slopeTolerance from the smallest fleet of at least
// slopeFrom agents to the largest, and be at most slopeMaxMs.
const (
	slopeFrom      = 1000
	slopeTolerance = 0.20
	slopeMaxMs     = 4.0
)

// slopeLayout ends the slope row's note: why its sizes compare.
const slopeLayout = "every size runs over as many processes as the largest needs (see the fleet rows), since a fleet split over processes costs more per agent by itself"

// slopeRow says how the CPU an agent costs per put changes with the size
// of the fleet: the value of each fleet row measured, and the ratio of
// the largest fleet's to the smallest's. It needs two fleet sizes.
//
// Where every row measured its fleet idle (Config.idleWindow), the ratio
// is that of the put's own CPU (put_cpu_ms_per_agent): with one machine's
// CPUs for the whole fleet, a put of N agents lasts about N times as long,
// and the CPU of the fleet's background over that time (each agent's
// timers and heartbeats, flat per agent and second) would count N times
// over per agent, where a real node pays it on its own CPU whatever the
// fleet's size. The background is then judged on its own: the idle CPU
// per agent and second must not grow by more than the tolerance either.
func slopeRow(rows []Row, cluster bool, source string) (Row, bool) {
	type point struct {
		n   int
		all float64 // CPU per agent per put, as measured
		// own is the put's own (all less the background) and idle the
		// idle fleet's CPU per agent and second, when measured
		own, idle float64
	}
	var pts []point
	net := true // every point has the put's own CPU
	for _, r := range rows {
		v, ok := r.Values["cpu_ms_per_agent"]
		if !ok || r.Error != "" {
			continue
		}
		own, ok := r.Values["put_cpu_ms_per_agent"]
		net = net && ok
		pts = append(pts, point{n: int(r.Values["agents"]), all: v, own: own, idle: r.Values["idle_ms_per_agent_s"]})
	}
	if len(pts) < 2 {
		return Row{}, false
	}
	// judged is what the ratio compares: the put's own CPU where every
	// fleet has it, else the CPU as measured.
	judged := func(p point) float64 {
		if net {
			return p.own
		}
		return p.all
	}
	slices.SortFunc(pts, func(a, b point) int { return a.n - b.n })
	group, id, where := GroupFleet, "fleet-slope", "1 server"
	if cluster {
		group, id, where = GroupCluster, "cluster-slope", "3-server cluster"
	}
	if source != SourceNATS {
		id += "-" + source
		where += ", " + source
	}
	first, last := pts[0], pts[len(pts)-1]
	// The target's range starts at slopeFrom agents when the run has such
	// a fleet: smaller ones pay the fixed costs of a put (the servers,
	// the bench) with fewer agents.
	for _, p := range pts {
		if p.n >= slopeFrom && p.n < last.n {
			first = p
			break
		}
	}
	var parts, alls, idles []string
	values := map[string]float64{}
	worst := 0.0
	for _, p := range pts {
		parts = append(parts, fmt.Sprintf("%s: %.2f ms", thousands(p.n), judged(p)))
		alls = append(alls, fmt.Sprintf("%.2f", p.all))
		idles = append(idles, fmt.Sprintf("%.3f", p.idle))
		values[fmt.Sprintf("cpu_ms_per_agent_%d", p.n)] = p.all
		if net {
			values[fmt.Sprintf("put_cpu_ms_per_agent_%d", p.n)] = p.own
			values[fmt.Sprintf("idle_ms_per_agent_s_%d", p.n)] = p.idle
		}
		if p.n >= first.n {
			worst = max(worst, p.all)
		}
	}
	ratio := judged(last) / judged(first)
	values["ratio"] = ratio
	values["from_agents"], values["to_agents"] = float64(first.n), float64(last.n)
	result := fmt.Sprintf("%s; %s → %s: ×%.2f", strings.Join(parts, ", "), thousands(first.n), thousands(last.n), ratio)
	note := fmt.Sprintf("the CPU the bench's process and shards used from each put until every agent ran the new version, per agent and put (the fleet rows' cpu_ms_per_agent); "+
		"flat means the cost of a node does not grow with the fleet: the ratio of the largest fleet's to that of %s agents (or the smallest) within ±%.0f %%; "+
		"%s", thousands(slopeFrom), slopeTolerance*100, slopeLayout)
	idleRatio := 1.0
	if net {
		idleRatio = last.idle / first.idle
		values["ratio_with_background"] = last.all / first.all
		values["idle_ratio"] = idleRatio
		result = fmt.Sprintf("the put's own %s; with the fleet's background over the put's time %s ms (×%.2f); idle %s ms per agent per second (×%.2f)",
			result, strings.Join(alls, " / "), last.all/first.all, strings.Join(idles, " / "), idleRatio)
		note = fmt.Sprintf("the put's own CPU per agent (the fleet rows' put_cpu_ms_per_agent) is the CPU the bench's process and shards used from each put until every agent ran the new version (cpu_ms_per_agent, \"with the fleet's background\"), "+
			"less what the fleet used idle after the puts (idle_ms_per_agent_s) over the put's wall time: on one machine's %d CPUs a put of N agents lasts about N times as long, "+
			"so the background every agent pays each second, put or not, would count N times over per agent, where a real node pays it on its own CPU. "+
			"Flat means neither grows with the fleet: the put's own CPU of the largest fleet within ±%.0f %% of that of %s agents (or the smallest), the idle CPU per agent and second no more than %.0f %% above it, and each CPU per agent per put with the background ≤ %.0f ms; %s",
			cpus(), slopeTolerance*100, thousands(slopeFrom), slopeTolerance*100, slopeMaxMs, slopeLayout)
	}
	r := Row{
		ID: id, Group: group, Name: fmt.Sprintf("CPU per agent per put by fleet size, %s", where),
		Result: result, Values: values, Note: note,
	}
	if !cluster {
		r.Target = fmt.Sprintf("×%.1f–%.1f, each ≤ %.0f ms", 1-slopeTolerance, 1+slopeTolerance, slopeMaxMs)
		if net {
			r.Target = fmt.Sprintf("the put's own ×%.1f–%.1f, idle ≤ ×%.1f, each ≤ %.0f ms", 1-slopeTolerance, 1+slopeTolerance, 1+slopeTolerance, slopeMaxMs)
		}
		r.judge(ratio >= 1-slopeTolerance && ratio <= 1+slopeTolerance && idleRatio <= 1+slopeTolerance && worst <= slopeMaxMs)
	}
	return r, true
}

// fleetTarget is the goal for n agents on one server.
func fleetTarget(n int, cluster bool) (time.Duration, bool) {
	switch {
	case cluster:
		return 0, false
	case n == 1000:
		return 2 * time.Second, true
	case n == 5000:
		return 10 * time.Second, true
	}
	return 0, false
}

// fleetRows1 measures one fleet of n agents, its puts alternating sources,
// and returns one row per source, in the order of sources.
func (b *bench) fleetRows1(ctx context.Context, n int, cluster bool, sources []string, processes int) []Row {
	named := sources[0] // the progress lines and profiles of an alternating fleet are named for nats
	if len(sources) > 1 {
		named = SourceNATS
	}
	id, _, name, servers := fleetNames(n, cluster, named)
	// Six measured puts per source: a garbage collection of the fleet's
	// heap (about 0.35 ms of CPU per agent at 1,000) landed on one put in
	// three or four, and with three puts per source which source it fell
	// to decided the comparison (the same ±15 % either way round). Each
	// put now starts collected and is charged a share of a collection
	// (see collect.go); the six puts still average the machine's noise.
	rounds := 6
	if b.cfg.Quick {
		rounds = 1
	}
	res, err := b.measureFleet(ctx, n, servers, rounds, name, id, sources, processes)
	rows := make([]Row, len(sources))
	for i, src := range sources {
		rows[i] = b.fleetRow(n, cluster, src, len(sources) > 1, res, err)
		if src == SourceNATS {
			pairRounds(rows[i], res)
		}
	}
	return rows
}

// pairRounds adds to the nats:// row of a fleet whose puts alternated
// nats:// and http:// the comparison round by round: the k-th puts of the
// two sources came one after the other (see putSource), on the same
// agents and heap, so their ratio is free of what drifts across a run.
// Its values: paired_rounds, paired_nats_faster (the rounds whose nats://
// put reached every agent no later than its http:// put) and
// paired_ratio_median.
func pairRounds(r Row, res fleetResult) {
	nats, http := res.by[SourceNATS], res.by[SourceHTTP]
	if nats == nil || http == nil || r.Values == nil {
		return
	}
	k := min(len(nats.all), len(http.all))
	if k == 0 {
		return
	}
	ratios := make([]float64, k)
	faster := 0
	for i := range k {
		ratios[i] = nats.all[i].Seconds() / max(http.all[i].Seconds(), 1e-9)
		if nats.all[i] <= http.all[i] {
			faster++
		}
	}
	slices.Sort(ratios)
	med := ratios[k/2]
	if k%2 == 0 {
		med = (ratios[k/2-1] + ratios[k/2]) / 2
	}
	r.Values["paired_rounds"] = float64(k)
	r.Values["paired_nats_faster"] = float64(faster)
	r.Values["paired_ratio_median"] = med
}

// fleetNames are the ID, group and name of the row of a fleet of n agents
// fetching from source, and its number of servers.
func fleetNames(n int, cluster bool, source string) (id, group, name string, servers int) {
	group, id, where, servers := GroupFleet, fmt.Sprintf("fleet-%d", n), "1 server", 1
	if cluster {
		group, id, where, servers = GroupCluster, fmt.Sprintf("cluster-%d", n), "3-server cluster, R3", 3
	}
	name = fmt.Sprintf("fleet of %s agents, %s", thousands(n), where)
	if source != SourceNATS {
		name += ", " + source
		id += "-" + source
	}
	return id, group, name, servers
}

// fleetRow is the row of the puts from source of a fleet of n agents that
// measureFleet measured (alternating it with other sources when
// alternated), with the error it returned.
func (b *bench) fleetRow(n int, cluster bool, source string, alternated bool, res fleetResult, err error) Row {
	id, group, name, _ := fleetNames(n, cluster, source)
	target := ""
	limit, hasTarget := fleetTarget(n, cluster)
	if hasTarget {
		target = "all ≤ " + ms(limit)
	}
	st := res.by[source]
	if st == nil {
		st = &putStats{}
	}
	if err != nil && len(st.times) == 0 {
		return failed(id, group, name, target, err)
	}
	allMedian, allWorst := median(st.all), maximum(st.all)
	busy := st.cpu.Seconds() / max(st.wall.Seconds(), 1e-9)
	others := st.others.Seconds() / max(st.wall.Seconds(), 1e-9)
	perAgent := msValue(st.cpu) / float64(n*max(len(st.all), 1))
	collectionPerAgent := msValue(st.collections) / float64(n*max(len(st.all), 1))
	faultsPerAgent := float64(st.faults) / float64(n*max(len(st.all), 1))
	p50, p99 := median(st.times), percentile(st.times, 99)
	alternating := ""
	if alternated {
		alternating = fmt.Sprintf("; the fleet's puts alternated their source, these are the %s ones", source)
	}
	r := Row{
		ID: id, Group: group, Name: name, Target: target,
		Result: fmt.Sprintf("p50 %s  p99 %s  all %s  (%s)", ms(p50), ms(p99), ms(allMedian), putsSummary(st.all)),
		Values: map[string]float64{
			"agents": float64(n), "puts": float64(len(st.all)),
			"p50_ms": msValue(p50), "p99_ms": msValue(p99), "all_ms": msValue(allMedian), "all_worst_ms": msValue(allWorst),
			"start_s":             res.start.Seconds(),
			"process_peak_rss_mb": res.peakRSS / 1e6,
			"live_heap_mb":        res.liveHeap / 1e6,
			"cpu_cores_busy":      busy,
			"cpu_cores_others":    others,
			"cpu_ms_per_agent":    perAgent,
			"faults_per_agent":    faultsPerAgent,
			"heap_warmed_mb":      float64(res.warmed) / 1e6,
			// The collections' shares in cpu_ms_per_agent (see
			// collect.go), and in how many processes' puts one fell
			// inside instead.
			"collection_ms_per_agent": collectionPerAgent,
			"collected_inside":        float64(st.collectedInside),
		},
		Note: fmt.Sprintf("time from the put until each agent's host loaded the new version; \"all\" is the time until the last agent did (the median over %d puts%s). "+
			"The agents and server(s) share %s and the machine's %d CPUs: while converging they kept %.2f CPUs busy (other processes %.2f), %.1f ms of CPU per agent per put "+
			"(a real fleet has a CPU per node; of which %.2f ms its share of a collection: every process collects before each put, and a put is charged the collection's CPU × what it allocated / the room the collector left, see collect.go) and took %.0f minor page faults per agent per put (after the heap was warmed by %.0f MB, see warmHeap); %s to start them all; live heap %.0f MB (%.2f MB per agent, with the server%s), peak RSS %.0f MB; agent directories in %s",
			len(st.all), alternating, fleetProcesses(res.shards), cpus(), busy, others, perAgent, collectionPerAgent, faultsPerAgent, float64(res.warmed)/1e6, ms(res.start), res.liveHeap/1e6, res.liveHeap/1e6/float64(n-res.shardAgents), shardHeap(res.shards), res.peakRSS/1e6, b.fleetRoot),
	}
	r.Values["shard_processes"] = float64(res.shards)
	if res.idleWall > 0 && len(st.all) > 0 {
		// The fleet's background (timers, heartbeats) runs during a put
		// too, and a put of a larger fleet lasts longer on the same
		// CPUs: the put's own CPU leaves out the idle fleet's CPU over
		// the put's wall time.
		idle := msValue(res.idleCPU) / res.idleWall.Seconds() / float64(n)
		background := idle * st.wall.Seconds() / float64(len(st.all))
		r.Values["idle_ms_per_agent_s"] = idle
		r.Values["background_ms_per_agent"] = background
		r.Values["put_cpu_ms_per_agent"] = perAgent - background
		r.Note += fmt.Sprintf("; idle after the puts (%s) the fleet used %.3f ms of CPU per agent per second, %.2f ms per agent over a put's time: "+
			"the put's own CPU is %.2f ms per agent", ms(res.idleWall), idle, background, perAgent-background)
	}
	if hasTarget {
		r.judge(allMedian <= limit && err == nil)
	}
	if err != nil {
		// The run stopped: the numbers are those of the puts (and agents)
		// that made it, and the row of the put that did not reach every
		// agent says how many it missed.
		r.Error = truncate(err.Error())
		if res.missedSource == source {
			r.Result = fmt.Sprintf("p50 %s  p99 %s of those that ran it; put %d: %s of %s agents did not in %s",
				ms(p50), ms(p99), res.puts, thousands(res.missed), thousands(n), ms(res.wait))
			r.Values["missed"] = float64(res.missed)
		}
	}
	return r
}

// fleetProcesses says which processes ran a fleet.
func fleetProcesses(shards int) string {
	if shards == 0 {
		return "this process"
	}
	return fmt.Sprintf("this process and %d shard process(es) (one process may not open files for the run's largest fleet, see ulimit -n, and every size of a run is spread the same way)", shards)
}

// shardHeap qualifies the live heap of a sharded fleet.
func shardHeap(shards int) string {
	if shards == 0 {
		return ""
	}
	return ", this process's agents only"
}

// putsSummary says how many puts "all" is the median of, and the worst.
func putsSummary(all []time.Duration) string {
	if len(all) == 1 {
		return "1 put"
	}
	return fmt.Sprintf("median of %d puts, worst %s", len(all), ms(maximum(all)))
}

// fleetResult is what measureFleet measured.
type fleetResult struct {
	by      map[string]*putStats // the puts, by the source they came from
	start   time.Duration        // starting the fleet and its first install
	peakRSS float64              // the peak resident sets of this process and the shards, bytes
	// puts is how many puts were made; when the last one did not reach
	// every agent within wait, missed says how many it did not reach and
	// missedSource where that put's version came from.
	puts         int
	missed       int
	missedSource string
	wait         time.Duration
	// liveHeap is the heap the last collection kept, in bytes: the
	// agents' and servers' memory, without garbage (this process's, not
	// the shards').
	liveHeap float64
	// shards is how many shard processes ran agents too (see shard.go),
	// shardAgents how many agents they ran.
	shards, shardAgents int
	// warmed is what warmHeap grew this process's heap by.
	warmed uint64
	// idleCPU is the CPU time this process and the shards used in idleWall
	// with the fleet idle after the puts (both 0 when not measured, see
	// Config.idleWindow): the background of every second, put or not.
	idleCPU, idleWall time.Duration
}

// putStats is what the puts of one source measured.
type putStats struct {
	times []time.Duration // from put to running, every agent of every put
	all   []time.Duration // from put until every agent ran, per put
	// cpu is the CPU time this process and the shards used from each put
	// until every agent ran the new version, wall that time. cpu includes
	// the collections' shares charged to the puts (see collect.go), also
	// in collections; collectedInside counts the processes and puts in
	// which a collection fell inside the put instead.
	cpu, wall       time.Duration
	collections     time.Duration
	collectedInside int
	// others is the CPU time the machine's other processes used then.
	others time.Duration
	// faults is the minor page faults this process and the shards took
	// then.
	faults int64
}

// stats returns the putStats of source, made on first use.
func (r *fleetResult) stats(source string) *putStats {
	if r.by == nil {
		r.by = map[string]*putStats{}
	}
	if r.by[source] == nil {
		r.by[source] = &putStats{}
	}
	return r.by[source]
}

// fleetStarting caps the agents starting at once (started, not yet running
// the first version), so a large fleet comes up at the pace the machine
// allows rather than all at once.
const fleetStarting = 64

// measureFleet starts n agents against servers embedded servers, all
// running version 0 of web, then makes one warm-up put from each of
// sources and rounds measured puts from each, alternating them (see
// putSource), each once every agent runs the version before.
//
// The warm-up puts are not measured: the first put after a fleet starts
// cost about 15 % more CPU per agent than the others, whichever its source
// (1,000 agents, the sources in either order, four runs), which counted
// against the source that came first and in every fleet row's CPU per
// agent.
func (b *bench) measureFleet(ctx context.Context, n, servers, rounds int, name, id string, sources []string, processes int) (res fleetResult, err error) {
	local, perShard, err := fleetSplit(n, fdSource(sources), b.cfg.AgentsPerProcess, processes)
	if err != nil {
		return res, err
	}
	if local < n && b.cfg.ShardCommand == nil {
		return res, fmt.Errorf("this process may open files for %d agents (ulimit -n), and no shard processes can be started", local)
	}
	gc := relaxGC(n)
	defer gc.restore()
	resetPeakRSS()
	b.prog.stepf("%s: starting the server(s)", name)
	dir, err := b.dir(fmt.Sprintf("fleet-%d-%d", servers, n))
	if err != nil {
		return res, err
	}
	const key = "fleet"
	warmUp := len(sources)
	puts := warmUp + rounds*len(sources)
	env, versions, web, stopFleet, err := b.startWebFleet(ctx, dir, servers, puts, key, sources)
	if err != nil {
		return res, err
	}
	defer stopFleet()
	obs := env.obs

	agentDirs := filepath.Join(b.fleetRoot, filepath.Base(dir))
	defer os.RemoveAll(agentDirs)
	b.prog.stepf("%s: starting the agents", name)
	began := time.Now()
	identities := make([]string, n)
	for i := range identities {
		identities[i] = identity(i)
	}
	var agents []*inProcess
	var shards []*child
	var shardFrom []int // the first agent of each shard
	defer func() {
		b.prog.stepf("%s: stopping the agents", name)
		for _, c := range shards {
			_ = c.cmd.Process.Signal(syscall.SIGTERM) // all at once, then wait for each
		}
		serr := stopAll(agents, time.Minute)
		for _, c := range shards {
			serr = errors.Join(serr, c.stop())
		}
		if serr != nil && err == nil {
			err = fmt.Errorf("stop the agents: %w", serr)
		}
	}()
	// Runs before the agents stop (deferred calls run last first), even
	// after a put that did not reach every agent.
	defer func() {
		res.peakRSS = float64(peakRSS())
		for _, c := range shards {
			if hwm, err := procStatusBytes(fmt.Sprint(c.pid()), "VmHWM"); err == nil {
				res.peakRSS += float64(hwm)
			}
		}
		runtime.GC() // the pacing is off: collect once to see what is live
		res.liveHeap = float64(liveHeap())
	}()
	v0 := webVersion(0)
	wait := fleetWait(n)
	// The waits for the agents' events end as soon as a shard process
	// stops; fleetFailure then says which and why.
	waitCtx, cancelWait := context.WithCancelCause(ctx)
	defer cancelWait(nil)
	part := Shard{URLs: env.urls, PublicKey: b.keys.pub, Key: key, Dir: agentDirs, From: 0, Count: local}
	if err := b.startAgents(ctx, obs, part, 0, &agents, wait); err != nil {
		return res, b.fleetFailure(obs, agents, shards, identities, v0, err)
	}
	for part.From = local; part.From < n; part.From += part.Count {
		// Each shard starts once the agents before it run, and paces
		// its own.
		if err := obs.await(waitCtx, webName, v0, part.From, wait, func(got int) { b.prog.countf("%d of %d running", got, n) }); err != nil {
			return res, b.fleetFailure(obs, agents, shards, identities, v0, err)
		}
		part.Count = min(perShard, n-part.From)
		c, err := b.startShard(ctx, part)
		if err != nil {
			return res, err
		}
		shards = append(shards, c)
		shardFrom = append(shardFrom, part.From)
		cancelOnExit(waitCtx, func(error) { cancelWait(errShardStopped) }, c)
	}
	res.shards, res.shardAgents = len(shards), n-local
	if err := obs.await(waitCtx, webName, v0, n, wait, func(got int) { b.prog.countf("%d of %d running", got, n) }); err != nil {
		return res, b.fleetFailure(obs, agents, shards, identities, v0, err)
	}
	res.start = time.Since(began)
	res.warmed = warmHeap()

	for k := 1; k <= puts; k++ {
		src, measured := putSource(sources, k), k > warmUp
		st := res.stats(src)
		// Each put finds the fleet as a real one does (see
		// DropConnections), and the agents' end of the connections is
		// done with before it.
		web.DropConnections()
		// Let the last round's tail (status writes, old trees) finish.
		b.prog.stepf("%s: waiting for the agents to settle", name)
		if !quiesce(ctx, time.Minute, shardCPUs(shards)...) {
			return res, context.Cause(ctx)
		}
		if k == warmUp+1 {
			stopProfile, err := b.startPutProfile(name, id)
			if err != nil {
				return res, err
			}
			defer stopProfile()
		}
		what := "put"
		if !measured {
			what = "warm-up put"
		}
		// Every process collects now, and the put is charged its share
		// of a collection (see collect.go).
		b.prog.stepf("%s: collecting every process's heap", name)
		collected, err := collectFleet(ctx, env.nc, shardFrom)
		if err != nil {
			return res, err
		}
		b.prog.stepf("%s: %s %d of %d (%s)", name, what, k, puts, src)
		obs.forgetFailures()
		next, err := b.keys.seal(uint64(k+1), versions[k:k+1])
		if err != nil {
			return res, err
		}
		syncDisks()
		used0 := fleetUsage(shards)
		busy0, _ := machineBusy()
		start := time.Now()
		if err := env.put(ctx, key, next); err != nil {
			return res, err
		}
		res.puts = k
		if err := obs.await(waitCtx, webName, webVersion(k), n, wait, func(got int) { b.prog.countf("%d of %d run version %d", got, n, k) }); err != nil {
			times := obs.loadTimes(webName, webVersion(k), identities, start)
			if measured {
				st.times = append(st.times, times...)
			}
			res.missed, res.missedSource, res.wait = n-len(times), src, wait
			return res, b.fleetFailure(obs, agents, shards, identities, webVersion(k), err)
		}
		if !measured {
			continue
		}
		wall := time.Since(start)
		used1 := fleetUsage(shards)
		busy1, _ := machineBusy()
		times := obs.loadTimes(webName, webVersion(k), identities, start)
		st.times = append(st.times, times...)
		st.all = append(st.all, maximum(times))
		cpu := used1.cpu - used0.cpu
		share, inside, err := collected.shares(ctx, env.nc)
		if err != nil {
			return res, err
		}
		st.cpu += cpu + share
		st.collections += share
		st.collectedInside += inside
		st.faults += used1.faults - used0.faults
		st.others += max(busy1-busy0-cpu, 0)
		st.wall += wall
	}
	if window := b.cfg.idleWindow(servers); window > 0 {
		// After the puts, not before: a fleet left idle for long before a
		// put makes that put dearer on a VM (see the README).
		b.prog.stepf("%s: measuring the idle fleet for %s", name, ms(window))
		if !quiesce(ctx, time.Minute, shardCPUs(shards)...) {
			return res, context.Cause(ctx)
		}
		// Charged its share of a collection, as a put is (see
		// collect.go): whether a collection of a fleet's whole heap falls
		// inside the window must not decide its idle CPU.
		collected, err := collectFleet(ctx, env.nc, shardFrom)
		if err != nil {
			return res, err
		}
		used0, start := fleetUsage(shards), time.Now()
		if !sleep(waitCtx, window) {
			return res, b.fleetFailure(obs, agents, shards, identities, webVersion(puts), context.Cause(waitCtx))
		}
		used1, wall := fleetUsage(shards), time.Since(start)
		share, _, err := collected.shares(ctx, env.nc)
		if err != nil {
			return res, err
		}
		res.idleCPU, res.idleWall = used1.cpu-used0.cpu+share, wall
	}
	return res, nil
}

// fleetIdleWindow is how long a fleet is measured idle: the longest period
// of an idle agent's own work (its status heartbeat and the spec watch's
// resync, every 30 s; its machines directory's rescan, every 10 s). A
// shorter window would catch the work of a fleet whose agents started
// within a few seconds of each other all at once or not at all.
const fleetIdleWindow = max(nodestatus.DefaultHeartbeat, kvwatcher.DefaultResyncInterval, agent.DefaultScanInterval)

// quickIdleWindow is the idle window of a --quick run: too short to be
// exact (see fleetIdleWindow), it only exercises the measurement.
const quickIdleWindow = 2 * time.Second

// idleWindow is how long the fleet rows on servers servers measure their
// fleet idle after the puts; 0 for a cluster, whose slope has no target.
func (c Config) idleWindow(servers int) time.Duration {
	switch {
	case servers > 1:
		return 0
	case c.Quick:
		return quickIdleWindow
	}
	return fleetIdleWindow
}

// startPutProfile starts the profiles of a fleet row's puts when
// Config.PutProfile asks for them, and returns the function that stops
// them: the CPU profile (which also covers the collection this process
// makes before each put, see collect.go: runtime.gcBgMarkWorker and
// runtime.GC in it are mostly those), and the heap profiles (allocations
// since the process started) at the start and at the end, for
// `go tool pprof -sample_index=alloc_space -base START END`.
func (b *bench) startPutProfile(name, id string) (func(), error) {
	if b.cfg.PutProfile == "" {
		return func() {}, nil
	}
	prefix := b.cfg.PutProfile + id
	if err := writeHeapProfile(prefix + ".allocs-start.pprof"); err != nil {
		return nil, err
	}
	f, err := os.Create(prefix + ".pprof")
	if err != nil {
		return nil, fmt.Errorf("bench: profile of the puts: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: profile of the puts: %w", err)
	}
	b.prog.stepf("%s: profiling the puts into %s.pprof", name, prefix)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		_ = writeHeapProfile(prefix + ".allocs.pprof")
	}, nil
}

// writeHeapProfile writes the heap profile to path. It collects first:
// the profile is as of the last collection, which with the fleet's pacing
// can be from before the agents started.
func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	werr := pprof.Lookup("allocs").WriteTo(f, 0)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	return nil
}

// fleetUsage is what this process and the child processes (shards,
// agents) used, each read once.
func fleetUsage(children []*child) usage {
	total := selfUsage()
	for _, c := range children {
		if u, err := procUsage(c.pid()); err == nil {
			total = total.plus(u)
		}
	}
	return total
}

// shardCPUs returns, for each shard process, a function that returns the
// CPU time it used (0 once it cannot be read).
func shardCPUs(shards []*child) []func() time.Duration {
	cpus := make([]func() time.Duration, len(shards))
	for i, c := range shards {
		cpus[i] = c.cpu
	}
	return cpus
}

// liveHeap is the heap the last garbage collection kept, in bytes.
func liveHeap() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

// quiesce waits until this process and each of others (the CPU time of
// other processes of the row, such as shards) uses less than a fifth of a
// CPU over half a second, or at most limit; it returns false when ctx
// ends. Each is checked on its own: a shard still warming its heap keeps
// one CPU busy while the fleet's idle agents, together, may use a fifth.
func quiesce(ctx context.Context, limit time.Duration, others ...func() time.Duration) bool {
	const window = 500 * time.Millisecond
	cpus := append([]func() time.Duration{selfCPU}, others...)
	c0 := make([]time.Duration, len(cpus))
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for i, cpu := range cpus {
			c0[i] = cpu()
		}
		if !sleep(ctx, window) {
			return false
		}
		idle := true
		for i, cpu := range cpus {
			idle = idle && cpu()-c0[i] < window/5
		}
		if idle {
			return true
		}
	}
	return true
}

// gcSettings are the collector's settings relaxGC replaced.
type gcSettings struct {
	percent int
	limit   int64
	relaxed bool
}

// fleetGCPercent is the collector's pacing while fleet rows run: the heap
// grows to five times what is live before a collection.
const fleetGCPercent = 400

// relaxGC paces the collector for the fleet rows: GOGC 400 instead of 100,
// the heap bounded by half the machine's memory. N agents in one process
// share one heap: with the default pacing the collector scans the whole
// fleet's heap (a gigabyte for 1,000 agents) many times while they
// converge and slows every agent at once, which N agent processes, each
// collecting its own few megabytes, do not (measured with 300 agents: 1.5 s
// to converge with the default, 0.5 s with far fewer collections).
// Proportional pacing keeps the collector's work per agent independent of
// the fleet's size, as in a real fleet: a collection scans N times more
// and comes N times less often. (A fixed bound instead, tried before,
// made it grow with N: the fleet's garbage grows with N, the room above
// the live heap did not as fast.)
func relaxGC(int) gcSettings {
	mem := memTotal()
	if mem <= 0 {
		return gcSettings{}
	}
	s := gcSettings{relaxed: true}
	s.limit = debug.SetMemoryLimit(mem / 2)
	s.percent = debug.SetGCPercent(fleetGCPercent)
	return s
}

// warmHeap grows this process's heap to the collector's goal once, before
// a fleet row's puts, and returns by how much. A long-running agent's heap
// has reached its size; a fleet process started for the row has not, and
// each put grew it into memory it had never touched: a minor page fault
// per 4 KiB page, which the kernel (of a VM especially) makes expensive.
// Measured on the 2-CPU VM of README "Performance", 2,000 agents: puts
// that took 150,000 faults used 1.2 to 6 s of system CPU more than those
// that took a few thousand, so the CPU per agent per put was bimodal (1.5
// or 2.5 to 4.7 ms) and grew with the fleet, whose heap grows with it.
// Warmed, a put takes a few faults per agent, and a collection, when one
// falls in a put, costs what it would in a long-running process.
//
// It touches one byte per page of (goal - in use) bytes with the
// collector off, drops them and collects: the pages stay with the heap
// (the runtime keeps what is below its goal), and later allocations
// reuse them. It never goes beyond 90 % of the memory limit or half of
// the memory the machine has available.
func warmHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return 0
		}
	}
	goal, inUse, limit := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	goal = min(goal, limit/10*9)
	if avail := memAvailable(); avail > 0 {
		goal = min(goal, inUse+uint64(avail)/2)
	}
	if goal <= inUse {
		return 0
	}
	const chunk = 1 << 20
	page := os.Getpagesize()
	old := debug.SetGCPercent(-1)
	chunks := make([][]byte, 0, (goal-inUse)/chunk+1)
	for n := inUse; n < goal; n += chunk {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		chunks = append(chunks, b)
	}
	warmed := uint64(len(chunks)) * chunk
	clear(chunks)
	debug.SetGCPercent(old)
	runtime.GC()
	return warmed
}

// restore puts the collector's settings back and collects.
func (s gcSettings) restore() {
	if !s.relaxed {
		return
	}
	debug.SetGCPercent(s.percent)
	debug.SetMemoryLimit(s.limit)
	runtime.GC()
}

// errShardStopped ends a fleet row's wait when a shard process stops;
// fleetFailure adds which and why.
var errShardStopped = errors.New("a shard process stopped")

// fleetFailure adds to err which agents do not run version of web yet,
// what they logged, and why agents stopped, if any did.
func (b *bench) fleetFailure(obs *observer, agents []*inProcess, shards []*child, identities []string, version string, err error) error {
	stopped := 0
	var first error
	for _, a := range agents {
		if aerr, ok := a.exited(); ok {
			stopped++
			if first == nil {
				first = aerr
			}
		}
	}
	for _, c := range shards {
		if cerr, ok := c.exited(); ok {
			err = fmt.Errorf("%w; a shard process exited: %v", err, cerr)
		}
	}
	if stopped > 0 {
		err = fmt.Errorf("%w; %d agents exited, the first: %v", err, stopped, first)
	}
	var behind []string
	for i, id := range identities {
		if _, ok, _ := obs.loadedAt(id, webName, version); ok {
			continue
		}
		switch {
		case len(behind) >= 3:
		case i < len(agents):
			behind = append(behind, fmt.Sprintf("%s (logged: %q)", id, lastLine(agents[i].stderr.String())))
		default:
			behind = append(behind, id+" (in a shard process)")
		}
	}
	if len(behind) > 0 {
		err = fmt.Errorf("%w; not running it: %s", err, strings.Join(behind, ", "))
	}
	return err
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
