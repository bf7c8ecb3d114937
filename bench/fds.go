package bench

import (
	"fmt"
	"slices"

	"github.com/mms-io/mms/internal/fdlimit"
)

// File descriptors of a fleet (see shard.go).
const (
	// fdsAgent is what an in-process agent holds itself: its NATS
	// connection, the locks of its state, machines and data directories
	// and a file watcher, and while it installs the stage and the files
	// it writes (measured: 5.7 on average at the peak of a put of 1,000
	// agents; one more, so that a busy machine, where more agents
	// install at once, does not run out).
	fdsAgent = 7
	// fdsServer is what a server holds per client: the other end.
	fdsServer = 1
	// fdsReserve is kept for everything else: the servers' listeners,
	// stores and routes, the bench itself.
	fdsReserve = 1024
)

// fleetSplit says how a fleet of n agents is run: local agents in this
// process (which also holds the servers' end of every connection) and the
// rest in shards of at most perShard agents, and at most perProcess (when
// above 0) in any process. With an http source each agent also holds a
// connection to the bench's web server, whose end is in this process too.
//
// processes, when above 1 and perProcess is 0, spreads the fleet over at
// least that many processes, as evenly as this one's open files allow:
// the fleet rows of one run all use the layout their largest fleet needs
// (fleetLayout), so that the slope compares like with like (a fleet split
// over three processes costs more CPU per agent than one in a single
// process: three runtimes, schedulers and collectors on the same CPUs).
func fleetSplit(n int, source string, perProcess, processes int) (local, perShard int, err error) {
	fdsAgent, fdsServer := fdsAgent, fdsServer
	if source == SourceHTTP {
		fdsAgent++
		fdsServer++
	}
	limit, err := fdlimit.Raise(n*(fdsAgent+fdsServer) + fdsReserve)
	if err != nil {
		return 0, 0, err
	}
	local = (limit - fdsReserve - n*fdsServer) / fdsAgent
	if local < 1 {
		return 0, 0, fmt.Errorf("a fleet of %d agents needs at least %d open files in this process and it may open %d (ulimit -n)",
			n, n*fdsServer+fdsReserve+fdsAgent, limit)
	}
	// A shard process may raise its limit as far as this one could.
	perShard = (limit - fdsReserve) / fdsAgent
	switch {
	case perProcess > 0:
		local, perShard = min(local, perProcess), min(perShard, perProcess)
	case processes > 1:
		local = min(local, ceilDiv(n, processes))
		if n > local {
			perShard = min(perShard, ceilDiv(n-local, processes-1))
		}
	}
	return min(local, n), perShard, nil
}

// fleetLayout is how many processes (this one and shards) a fleet of n
// agents needs at the least; 0 with perProcess above 0, which sets the
// layout itself.
func fleetLayout(n int, source string, perProcess int) (int, error) {
	if perProcess > 0 {
		return 0, nil
	}
	local, perShard, err := fleetSplit(n, source, 0, 0)
	if err != nil {
		return 0, err
	}
	return 1 + ceilDiv(n-local, perShard), nil
}

// fdSource is the source of sources whose agents hold the most files (an
// http:// download holds a connection of its own), which sizes a fleet
// whose puts alternate them.
func fdSource(sources []string) string {
	if slices.Contains(sources, SourceHTTP) {
		return SourceHTTP
	}
	return sources[0]
}

// ceilDiv is a/b rounded up, for a ≥ 0 and b > 0.
func ceilDiv(a, b int) int { return (a + b - 1) / b }
