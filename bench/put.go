package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// putRows measures put → running on one agent.
func (b *bench) putRows(ctx context.Context) []Row {
	changes := 50
	if b.cfg.Quick {
		changes = 10
	}
	const id, target = "put", "p50 ≤ 50 ms"
	name := "put → running, 1 agent"
	if b.cfg.source() != SourceNATS {
		name += ", " + b.cfg.source()
	}
	b.prog.stepf("put → running: %d version changes on one agent", changes)
	times, err := b.measurePut(ctx, changes)
	if err != nil {
		return []Row{failed(id, GroupPut, name, target, err)}
	}
	p50, p99, top := median(times), percentile(times, 99), maximum(times)
	r := Row{
		ID: id, Group: GroupPut, Name: name, Target: target,
		Result: fmt.Sprintf("p50 %s  p99 %s  max %s  (%d puts)", ms(p50), ms(p99), ms(top), len(times)),
		Values: map[string]float64{"p50_ms": msValue(p50), "p99_ms": msValue(p99), "max_ms": msValue(top), "puts": float64(len(times))},
		Note: "from the KV put of a new spec to the host's \"loaded\" event of the new version (" + b.cfg.source() + " source, " +
			"small archive, agent in this process, a client of the bench's server, its directories on disk)",
	}
	r.judge(p50 <= 50*time.Millisecond)
	return []Row{r}
}

// measurePut starts one agent running version 0 of web and puts versions
// 1..changes one after the other, each once the previous one runs. It
// returns the time from each put to the new version running.
func (b *bench) measurePut(ctx context.Context, changes int) ([]time.Duration, error) {
	dir, err := b.dir("put")
	if err != nil {
		return nil, err
	}
	env, err := startNATS(ctx, dir, 1)
	if err != nil {
		return nil, err
	}
	defer env.close()
	obs := env.obs
	versions, web, err := b.webVersions(ctx, env, changes, []string{b.cfg.source()})
	if err != nil {
		return nil, err
	}
	defer web.Close()
	const key, identity = "put", "put-node"
	first, err := b.keys.seal(1, versions[:1])
	if err != nil {
		return nil, err
	}
	if err := env.put(ctx, key, first); err != nil {
		return nil, err
	}
	a := b.startInProcess(b.agentArgs(env.urls, filepath.Join(dir, "agent"), identity, key))
	defer a.stop(time.Minute)
	wait, cancel := untilExit(ctx, a) // an agent that stops fails the row at once
	defer cancel()
	if err := obs.await(wait, webName, webVersion(0), 1, time.Minute, nil); err != nil {
		if aerr, ok := a.exited(); ok {
			return nil, aerr
		}
		return nil, fmt.Errorf("first version: %w", err)
	}
	times := make([]time.Duration, 0, changes)
	for k := 1; k <= changes; k++ {
		next, err := b.keys.seal(uint64(k+1), versions[k:k+1])
		if err != nil {
			return nil, err
		}
		b.prog.countf("%d/%d", k, changes)
		web.DropConnections()
		syncDisks() // the install's flush must not pay for the bench's writes
		start := time.Now()
		if err := env.put(ctx, key, next); err != nil {
			return nil, err
		}
		if err := obs.await(wait, webName, webVersion(k), 1, time.Minute, nil); err != nil {
			if aerr, ok := a.exited(); ok {
				return nil, aerr
			}
			return nil, fmt.Errorf("version change %d: %w", k, err)
		}
		times = append(times, obs.loadTimes(webName, webVersion(k), []string{identity}, start)...)
	}
	return times, nil
}
