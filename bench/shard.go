package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A fleet larger than one process's open file limit allows (each agent
// holds its NATS connection and three directory locks, and the server
// holds the other end of every connection) is split: this process runs the
// servers and as many agents as fit, and shard processes (this binary's
// `mms bench`, given a Shard) run the rest, each as many as fit in it.
// Every agent is still in some process with thousands of others, and the
// bench observes them all the same way, through their events.

// Shard is a part of a fleet run by another process: the agents From to
// From+Count-1 of the fleet (identities node-00001, …), clients of URLs,
// trusting PublicKey, watching Key, their directories under Dir.
type Shard struct {
	URLs      string `json:"urls"`
	PublicKey string `json:"public_key"`
	Key       string `json:"key"`
	Dir       string `json:"dir"`
	From      int    `json:"from"`
	Count     int    `json:"count"`
}

// RunShard runs the agents of s in this process with runAgent (see
// Config.RunAgent), starting them at the pace a fleet row does, until ctx
// is done; then it stops them.
func RunShard(ctx context.Context, s Shard, runAgent func(context.Context, []string, io.Writer) error) error {
	if s.Count < 1 || s.From < 0 {
		return fmt.Errorf("bench shard: agents %d to %d: want at least one", s.From, s.From+s.Count-1)
	}
	nc, err := nats.Connect(s.URLs, nats.Name("mms bench shard"))
	if err != nil {
		return fmt.Errorf("bench shard: connect: %w", err)
	}
	defer nc.Close()
	// The fleet row asks this process to collect its heap before each
	// put, and what it allocated after (see collect.go).
	sub, err := answerCollections(nc, s.From)
	if err != nil {
		return fmt.Errorf("bench shard: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	obs, err := observe(nc)
	if err != nil {
		return err
	}
	// The observer paces the start only: closed once every agent runs,
	// so this process does not decode every event of the whole fleet
	// while the bench measures the fleet's CPU.
	stopObserving := sync.OnceFunc(obs.close)
	defer stopObserving()
	gc := relaxGC(s.Count)
	defer gc.restore()
	b := &bench{cfg: Config{RunAgent: runAgent}, keys: keys{pub: s.PublicKey}, prog: newProgress(nil, false)}
	var agents []*inProcess
	defer func() { _ = stopAll(agents, time.Minute) }()
	base, _ := obs.count(webName, webVersion(0))
	if err := b.startAgents(ctx, obs, s, base, &agents, fleetWait(s.From+s.Count)); err != nil {
		return err
	}
	stopObserving()
	// As the main process does before the puts; it waits until this
	// process is idle (quiesce), so the puts do not meet the warming.
	warmHeap()
	<-ctx.Done()
	return stopAll(agents, time.Minute)
}

// fleetWait is how long a fleet of n agents may take for one step: to
// start, or to run a new version.
func fleetWait(n int) time.Duration { return time.Minute + time.Duration(n)*20*time.Millisecond }

// identity is the fleet's i-th agent's identity (from 0).
func identity(i int) string { return fmt.Sprintf("node-%05d", i+1) }

// startAgents starts the agents of s in this process, appending them to
// *agents, keeping at most fleetStarting of them started and not yet
// running the fleet's first version (base agents of the fleet ran it
// before). An agent that does not catch up within wait fails the start.
func (b *bench) startAgents(ctx context.Context, obs *observer, s Shard, base int, agents *[]*inProcess, wait time.Duration) error {
	v0 := webVersion(0)
	started := 0
	for i := s.From; i < s.From+s.Count; i++ {
		deadline := time.Now().Add(wait)
		for {
			running, changed := obs.count(webName, v0)
			running -= base
			b.prog.countf("%d started, %d running", s.From+started, base+running)
			if started-running < fleetStarting {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d agents started, %d run the first version after %s", started, running, ms(wait))
			}
			select {
			case <-changed:
			case <-time.After(time.Second):
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		id := identity(i)
		*agents = append(*agents, b.startInProcess(b.agentArgs(s.URLs, filepath.Join(s.Dir, id), id, s.Key)))
		started++
	}
	return nil
}

// startShard starts a shard process running s.
func (b *bench) startShard(ctx context.Context, s Shard) (*child, error) {
	spec, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return startCmd(b.cfg.ShardCommand(ctx, string(spec)), "a shard process")
}
