package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// procsAgents is how many agent processes the procs rows run.
func (c Config) procsAgents() int {
	switch {
	case c.ProcAgents > 0:
		return c.ProcAgents
	case c.Quick:
		return 10
	}
	return 200
}

// procsFleet is one kind of agent process the procs rows run: this
// binary's agent, or Config.CompareAgent's.
type procsFleet struct {
	label   string
	command func(ctx context.Context, args []string) *exec.Cmd
}

// procsResult is what the procs rows measured for one kind of agent.
type procsResult struct {
	all      []time.Duration // per put, until every agent ran it
	times    []time.Duration // per agent and put
	cpu      time.Duration   // the agents' and this process's CPU while converging
	puts     int
	rss      []float64 // each agent's resident set after its last put, bytes
	startAll []time.Duration
}

// procsRows measures fleets of real `mms agent` processes, each a client
// of one server in this process: from a put until every agent runs the
// new version, and the CPU the agents and the server used meanwhile. With
// Config.CompareAgent the same fleets run that binary's agent too,
// alternately with this one's, round by round, so both see the same
// machine; a last row compares them.
func (b *bench) procsRows(ctx context.Context) []Row {
	n, rounds, puts := b.cfg.procsAgents(), 3, 3
	if b.cfg.Quick {
		rounds, puts = 1, 2
	}
	fleets := []procsFleet{{label: "this mms", command: b.cfg.AgentCommand}}
	if bin := b.cfg.CompareAgent; bin != "" {
		fleets = append(fleets, procsFleet{label: filepath.Base(bin), command: func(ctx context.Context, args []string) *exec.Cmd {
			return exec.CommandContext(ctx, bin, append([]string{"agent"}, args...)...)
		}})
	}
	results := make([]procsResult, len(fleets))
	var errs []error
	for r := range rounds {
		for i, f := range fleets {
			name := fmt.Sprintf("fleet of %d agent processes (%s), round %d of %d", n, f.label, r+1, rounds)
			if err := b.measureProcs(ctx, f, n, puts, name, &results[i]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.label, err))
			}
			if ctx.Err() != nil {
				return nil
			}
		}
	}
	var rows []Row
	for i, f := range fleets {
		id := "procs"
		if i > 0 {
			id = "procs-compare"
		}
		name := fmt.Sprintf("fleet of %d real agent processes (%s), 1 server", n, f.label)
		res := results[i]
		if len(res.all) == 0 {
			err := errors.New("no put measured")
			if len(errs) > 0 {
				err = errs[0]
			}
			rows = append(rows, failed(id, GroupProcs, name, "", err))
			continue
		}
		allMedian := median(res.all)
		perAgent := msValue(res.cpu) / float64(n*res.puts)
		var rssSum float64
		for _, v := range res.rss {
			rssSum += v
		}
		rss := rssSum / float64(max(len(res.rss), 1))
		rows = append(rows, Row{
			ID: id, Group: GroupProcs, Name: name,
			Result: fmt.Sprintf("p50 %s  p99 %s  all %s  (median of %d puts)  %.1f ms CPU per agent per put  RSS %.1f MB per agent",
				ms(median(res.times)), ms(percentile(res.times, 99)), ms(allMedian), len(res.all), perAgent, rss/1e6),
			Values: map[string]float64{"agents": float64(n), "all_ms": msValue(allMedian), "p50_ms": msValue(median(res.times)),
				"cpu_ms_per_agent": perAgent, "rss_mb_per_agent": rss / 1e6, "puts": float64(len(res.all)), "start_s": median(res.startAll).Seconds()},
			Note: fmt.Sprintf("%d `mms agent` processes (%s), each a client of the bench's server (in this process), on the machine's %d CPUs; "+
				"%d rounds of %d puts, a fresh fleet each round%s; CPU is the agents' and this process's user+system time from each put until every agent ran its version; RSS is VmRSS after the last put",
				n, f.label, cpus(), rounds, puts, alternately(len(fleets))),
		})
	}
	if len(fleets) == 2 && len(rows) == 2 && rows[0].Error == "" && rows[1].Error == "" {
		a, c := rows[0].Values, rows[1].Values
		r := Row{
			ID: "procs-vs", Group: GroupProcs, Name: fmt.Sprintf("real agent processes: this mms against %s", fleets[1].label),
			Result: fmt.Sprintf("all %s vs %s (×%.2f), %.1f vs %.1f ms CPU per agent per put, RSS %.1f vs %.1f MB",
				ms(time.Duration(a["all_ms"]*float64(time.Millisecond))), ms(time.Duration(c["all_ms"]*float64(time.Millisecond))), a["all_ms"]/c["all_ms"],
				a["cpu_ms_per_agent"], c["cpu_ms_per_agent"], a["rss_mb_per_agent"], c["rss_mb_per_agent"]),
			Values: map[string]float64{"all_ratio": a["all_ms"] / c["all_ms"], "cpu_ratio": a["cpu_ms_per_agent"] / c["cpu_ms_per_agent"]},
			Target: "no slower: all ≤ the other's",
		}
		r.judge(a["all_ms"] <= c["all_ms"])
		rows = append(rows, r)
	}
	return rows
}

// alternately says how the fleets of the kinds of agents took turns.
func alternately(kinds int) string {
	if kinds < 2 {
		return ""
	}
	return ", the two kinds of agents alternately"
}

// measureProcs starts n agent processes of f on a new server, all running
// version 0 of web, puts versions 1..puts, and adds what it measured to
// res.
func (b *bench) measureProcs(ctx context.Context, f procsFleet, n, puts int, name string, res *procsResult) (err error) {
	b.prog.stepf("%s: starting the server", name)
	dir, err := b.dir("procs")
	if err != nil {
		return err
	}
	env, err := startNATS(ctx, dir, 1)
	if err != nil {
		return err
	}
	defer env.close()
	obs := env.obs
	versions, web, err := b.webVersions(ctx, env, puts, []string{SourceNATS})
	if err != nil {
		return err
	}
	defer web.Close()
	const key = "procs"
	first, err := b.keys.seal(1, versions[:1])
	if err != nil {
		return err
	}
	if err := env.put(ctx, key, first); err != nil {
		return err
	}
	b.prog.stepf("%s: starting the agents", name)
	began := time.Now()
	var agents []*child
	defer func() {
		b.prog.stepf("%s: stopping the agents", name)
		for _, a := range agents {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	// The waits for the agents' events end as soon as one of them stops.
	waitCtx, cancelWait := context.WithCancelCause(ctx)
	defer cancelWait(nil)
	identities := make([]string, n)
	wait := fleetWait(n)
	for i := range identities {
		identities[i] = identity(i)
		// At most fleetStarting agents starting at once.
		for {
			got, _ := obs.count(webName, webVersion(0))
			if i-got < fleetStarting {
				break
			}
			if err := obs.await(waitCtx, webName, webVersion(0), got+1, wait, nil); err != nil {
				return fmt.Errorf("agents did not start: %w", err)
			}
		}
		cmd := f.command(ctx, b.agentArgs(env.urls, filepath.Join(dir, "agent-"+strconv.Itoa(i)), identities[i], key))
		a, err := startCmd(cmd, "an agent process")
		if err != nil {
			return err
		}
		agents = append(agents, a)
		cancelOnExit(waitCtx, cancelWait, a)
		b.prog.countf("%d of %d started", i+1, n)
	}
	if err := obs.await(waitCtx, webName, webVersion(0), n, wait, func(got int) { b.prog.countf("%d of %d running", got, n) }); err != nil {
		return err
	}
	res.startAll = append(res.startAll, time.Since(began))
	cpu := func() time.Duration { return fleetUsage(agents).cpu }
	for k := 1; k <= puts; k++ {
		b.prog.stepf("%s: waiting for the agents to settle", name)
		if !quiesce(ctx, time.Minute) {
			return context.Cause(ctx)
		}
		b.prog.stepf("%s: put %d of %d", name, k, puts)
		next, err := b.keys.seal(uint64(k+1), versions[k:k+1])
		if err != nil {
			return err
		}
		cpu0 := cpu()
		start := time.Now()
		if err := env.put(ctx, key, next); err != nil {
			return err
		}
		if err := obs.await(waitCtx, webName, webVersion(k), n, wait, func(got int) { b.prog.countf("%d of %d run version %d", got, n, k) }); err != nil {
			return err
		}
		res.cpu += cpu() - cpu0
		times := obs.loadTimes(webName, webVersion(k), identities, start)
		res.times = append(res.times, times...)
		res.all = append(res.all, maximum(times))
		res.puts++
	}
	for _, a := range agents {
		if rss, err := procStatusBytes(strconv.Itoa(a.pid()), "VmRSS"); err == nil {
			res.rss = append(res.rss, float64(rss))
		}
	}
	return nil
}
