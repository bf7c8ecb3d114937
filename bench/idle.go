package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mms-io/mms/spec"
)

// idleMachines is how many machines the idle agent runs.
const idleMachines = 100

// idleRows measures an agent process that runs idleMachines machines and
// has nothing to do: its resident memory and CPU share over a window.
func (b *bench) idleRows(ctx context.Context) []Row {
	window, settle := 60*time.Second, 10*time.Second
	if b.cfg.Quick {
		window, settle = 5*time.Second, 2*time.Second
	}
	const id, target = "idle", "RSS ≤ 35 MB and ≤ 0.3 % of a CPU"
	name := fmt.Sprintf("idle agent process, %d machines, %s", idleMachines, ms(window))
	res, err := b.measureIdle(ctx, window, settle, name)
	if err != nil {
		return []Row{failed(id, GroupIdle, name, target, err)}
	}
	const mib = 1 << 20
	cpu := res.cpu.Seconds() / window.Seconds() * 100
	r := Row{
		ID: id, Group: GroupIdle, Name: name, Target: target,
		Result: fmt.Sprintf("RSS %.1f MB (max %.1f)  CPU %.2f %% of a CPU", res.meanRSS/1e6, float64(res.maxRSS)/1e6, cpu),
		Values: map[string]float64{"rss_mib": res.meanRSS / mib, "rss_max_mib": float64(res.maxRSS) / mib, "cpu_percent": cpu,
			"window_s": window.Seconds(), "machines": idleMachines, "threads": float64(res.threads)},
		Note: fmt.Sprintf("a real `mms agent` process, a client of the bench's server, running %d machines (each a timer and a 30 s exec of a script), "+
			"measured %s after the last one started; CPU is the agent's own user+system time from /proc/<pid>/stat (not its scripts'), RSS is VmRSS sampled every second (the target is the mean; most of it is the binary's pages, shared with other processes running it)",
			idleMachines, ms(settle)),
	}
	r.judge(res.meanRSS <= 35e6 && cpu <= 0.3)
	return []Row{r}
}

// idleResult is what measureIdle measured.
type idleResult struct {
	meanRSS float64
	maxRSS  int64
	cpu     time.Duration
	threads int64
}

func (b *bench) measureIdle(ctx context.Context, window, settle time.Duration, name string) (res idleResult, err error) {
	b.prog.stepf("%s: installing the machines", name)
	dir, err := b.dir("idle")
	if err != nil {
		return res, err
	}
	env, err := startNATS(ctx, dir, 1)
	if err != nil {
		return res, err
	}
	defer env.close()
	obs := env.obs
	entries := make([]spec.Machine, idleMachines)
	names := make([]string, idleMachines)
	for i := range entries {
		names[i] = fmt.Sprintf("idle-%03d", i+1)
		a, err := smallArchive(ctx, filepath.Join(dir, "archives", names[i]), names[i], "1.0.0", idleMachine)
		if err != nil {
			return res, err
		}
		if entries[i], err = env.upload(ctx, a, names[i]+".tar.gz"); err != nil {
			return res, err
		}
	}
	const key, identity = "idle", "idle-node"
	s, err := b.keys.seal(1, entries)
	if err != nil {
		return res, err
	}
	if err := env.put(ctx, key, s); err != nil {
		return res, err
	}
	agent, err := b.startChild(ctx, b.agentArgs(env.urls, filepath.Join(dir, "agent"), identity, key), nil)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := agent.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	wait, cancel := untilExit(ctx, agent) // an agent that stops fails the row at once
	defer cancel()
	deadline := time.Now().Add(2 * time.Minute)
	for i, n := range names {
		b.prog.countf("%d of %d running", i, len(names))
		if _, err := obs.awaitOne(wait, identity, n, "1.0.0", time.Until(deadline)); err != nil {
			if aerr, ok := agent.exited(); ok {
				return res, aerr
			}
			return res, err
		}
	}

	b.prog.stepf("%s: settling for %s", name, ms(settle))
	if !sleep(ctx, settle) {
		return res, context.Cause(ctx)
	}
	b.prog.stepf("%s: measuring for %s", name, ms(window))
	pid := agent.pid()
	cpu0, err := ProcCPU(pid)
	if err != nil {
		return res, fmt.Errorf("read the agent's CPU time (Linux /proc): %w", err)
	}
	start := time.Now()
	var sum float64
	var samples int
	for time.Since(start) < window {
		if !sleep(ctx, time.Second) {
			return res, context.Cause(ctx)
		}
		if aerr, ok := agent.exited(); ok {
			return res, aerr
		}
		rss, err := procStatusBytes(strconv.Itoa(pid), "VmRSS")
		if err != nil {
			return res, fmt.Errorf("read the agent's RSS: %w", err)
		}
		sum += float64(rss)
		samples++
		res.maxRSS = max(res.maxRSS, rss)
		b.prog.countf("%s of %s, RSS %.1f MiB", ms(time.Since(start).Round(time.Second)), ms(window), float64(rss)/(1<<20))
	}
	cpu1, err := ProcCPU(pid)
	if err != nil {
		return res, fmt.Errorf("read the agent's CPU time: %w", err)
	}
	res.cpu = cpu1 - cpu0
	res.meanRSS = sum / float64(samples)
	res.threads, _ = procStatusCount(strconv.Itoa(pid), "Threads")
	return res, nil
}

// sleep waits d, or returns false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
