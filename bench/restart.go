package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/provision"
)

// maxRestartAgents caps the fleet of the cluster-restart row: the
// largest fleet size asked for (the smallest in a quick run), at most this
// many.
const maxRestartAgents = 1000

// restartRows measures the cluster-restart row.
func (b *bench) restartRows(ctx context.Context) []Row {
	sizes := b.cfg.agents()
	n := sizes[len(sizes)-1]
	if b.cfg.Quick {
		n = sizes[0]
	}
	return []Row{b.restartRow(ctx, min(n, maxRestartAgents))}
}

// restartResult is what measureRestart measured.
type restartResult struct {
	back, reconverge time.Duration
	// before and after are the consumers of the spec and status streams
	// before the restart and once they settled after it (settled is false
	// when they did not come back to before's within a minute).
	before, after map[string]int
	settled       bool
}

func (b *bench) restartRow(ctx context.Context, n int) Row {
	id := fmt.Sprintf("cluster-restart-%d", n)
	name := fmt.Sprintf("restart of the whole 3-server cluster under %s agents", thousands(n))
	res, err := b.measureRestart(ctx, n, name)
	if err != nil {
		return failed(id, GroupRestart, name, "", err)
	}
	spec, status := "KV_"+provision.Defaults().SpecBucket, "KV_"+nodestatus.Bucket
	r := Row{
		ID: id, Group: GroupRestart, Name: name,
		Result: fmt.Sprintf("back %s after the stop; a new spec on all %s %s after its put; consumers of the spec stream %d before, %d after (status stream %d, %d)",
			ms(res.back), thousands(n), ms(res.reconverge), res.before[spec], res.after[spec], res.before[status], res.after[status]),
		Values: map[string]float64{
			"agents": float64(n), "back_ms": msValue(res.back), "reconverge_ms": msValue(res.reconverge),
			"spec_consumers_before": float64(res.before[spec]), "spec_consumers_after": float64(res.after[spec]),
			"status_consumers_before": float64(res.before[status]), "status_consumers_after": float64(res.after[status]),
		},
		Target: "consumers after = before",
		Note: "the agents run in this process against three servers made ready as `mms init --replicas 3` makes them; every server is stopped at once (a clean shutdown in this process: " +
			"TestFleetSurvivesClusterRestart kills server processes with SIGKILL) and started again on its ports and store. \"back\" is until every resource has every replica current again; " +
			"the new spec is put then, and the time runs until every agent's host loaded its version. The consumers are counted once they settle: an agent's watch is one consumer on the spec stream",
	}
	r.judge(res.settled)
	return r
}

// measureRestart runs n agents on a three-server cluster, restarts the
// whole cluster and measures how it comes back.
func (b *bench) measureRestart(ctx context.Context, n int, name string) (res restartResult, err error) {
	local, _, err := fleetSplit(n, SourceNATS, b.cfg.AgentsPerProcess, 0)
	if err != nil {
		return res, err
	}
	if local < n {
		return res, fmt.Errorf("this process may open files for %d agents (ulimit -n), fewer than %d", local, n)
	}
	gc := relaxGC(n)
	defer gc.restore()
	b.prog.stepf("%s: starting the servers", name)
	dir, err := b.dir(fmt.Sprintf("restart-%d", n))
	if err != nil {
		return res, err
	}
	const key = "restart"
	env, versions, _, stopFleet, err := b.startWebFleet(ctx, dir, 3, 1, key, []string{SourceNATS})
	if err != nil {
		return res, err
	}
	defer stopFleet()
	agentDirs := filepath.Join(b.fleetRoot, filepath.Base(dir))
	defer os.RemoveAll(agentDirs)
	b.prog.stepf("%s: starting the agents", name)
	var agents []*inProcess
	defer func() {
		b.prog.stepf("%s: stopping the agents", name)
		if serr := stopAll(agents, time.Minute); serr != nil && err == nil {
			err = fmt.Errorf("stop the agents: %w", serr)
		}
	}()
	wait := fleetWait(n)
	if err := b.startAgents(ctx, env.obs, Shard{URLs: env.urls, PublicKey: b.keys.pub, Key: key, Dir: agentDirs, From: 0, Count: n}, 0, &agents, wait); err != nil {
		return res, err
	}
	if err := env.obs.await(ctx, webName, webVersion(0), n, wait, func(got int) { b.prog.countf("%d of %d running", got, n) }); err != nil {
		return res, err
	}
	streams := []string{"KV_" + provision.Defaults().SpecBucket, "KV_" + nodestatus.Bucket}
	if res.before, err = settledConsumers(ctx, env, streams, func(c map[string]int) bool { return c[streams[0]] >= n }); err != nil {
		return res, fmt.Errorf("consumers before the restart: %w", err)
	}

	b.prog.stepf("%s: restarting the cluster", name)
	start := time.Now()
	if err := env.restart(ctx); err != nil {
		return res, err
	}
	if err := everyReplicaCurrent(ctx, env); err != nil {
		return res, err
	}
	res.back = time.Since(start)

	b.prog.stepf("%s: a new spec", name)
	next, err := b.keys.seal(2, versions[1:2])
	if err != nil {
		return res, err
	}
	putAt := time.Now()
	if err := env.put(ctx, key, next); err != nil {
		return res, err
	}
	if err := env.obs.await(ctx, webName, webVersion(1), n, wait, func(got int) { b.prog.countf("%d of %d run the new version", got, n) }); err != nil {
		return res, err
	}
	res.reconverge = time.Since(putAt)
	b.prog.stepf("%s: counting consumers", name)
	res.after, err = settledConsumers(ctx, env, streams, func(c map[string]int) bool {
		return c[streams[0]] == res.before[streams[0]] && c[streams[1]] == res.before[streams[1]]
	})
	res.settled = err == nil
	if errors.Is(err, context.Canceled) {
		return res, err
	}
	return res, nil
}

// settledConsumers counts the consumers of streams every second until ok
// accepts the counts, for at most a minute; it returns the last counts and
// an error when ok never did.
func settledConsumers(ctx context.Context, env *natsEnv, streams []string, ok func(map[string]int) bool) (map[string]int, error) {
	deadline := time.Now().Add(time.Minute)
	var last map[string]int
	for {
		counts := map[string]int{}
		var err error
		for _, name := range streams {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, serr := env.js.Stream(cctx, name)
			if serr == nil {
				counts[name] = s.CachedInfo().State.Consumers
			}
			cancel()
			err = errors.Join(err, serr)
		}
		if err == nil {
			last = counts
			if ok(counts) {
				return counts, nil
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("consumers %v did not settle within a minute: %v", last, err)
		}
		if !sleep(ctx, time.Second) {
			return last, context.Cause(ctx)
		}
	}
}

// everyReplicaCurrent waits until every resource of the fleet has every
// replica current (provision.Check finds nothing to report).
func everyReplicaCurrent(ctx context.Context, env *natsEnv) error {
	f := provision.Defaults()
	f.Replicas = len(env.servers)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		outcomes, err := provision.Check(cctx, env.js, f)
		cancel()
		if err == nil {
			err = notOK(outcomes)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster is not back after 2m: %w", err)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return context.Cause(ctx)
		}
	}
}

// notOK names the first outcome that is not OK.
func notOK(outcomes []provision.Outcome) error {
	for _, o := range outcomes {
		if o.Action != provision.OK {
			return fmt.Errorf("%s %s: %s %v %v", o.Resource.Kind, o.Resource.Name, o.Action, o.Replicas, o.Err)
		}
	}
	return nil
}
