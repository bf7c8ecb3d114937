package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/backoff"
)

// A fleet's heap is collected once every few puts (GOGC 400, see
// relaxGC), and the put a collection falls on pays for all of it: its CPU
// and the page faults of the collector's first touch of its own metadata
// (perf record -e minor-faults of a 1,000-agent fleet's puts: the faults
// left after warmHeap are in the collector). Which puts those were decided
// by up to 0.25 ms per agent which source or size looked cheaper.
//
// So every fleet process collects before each put, outside the measured
// window, and the put is charged its share of a collection instead: what
// the collection before it cost the process, times what the put allocated
// there over the room the collector left it (goal − live heap). That is
// what the put's garbage costs in a process that collects once its room
// is used up, whichever put the collection then falls on. When a
// collection falls inside a put anyway (it allocated more than the room),
// its cost is in the put's CPU already and no share is added.

// collection is what a process's full collection before a put measured.
type collection struct {
	CPU    time.Duration `json:"cpu_ns"` // what the collection cost the process
	Room   uint64        `json:"room"`   // the heap goal after it, less the live heap: what the process may allocate before its next
	Allocs uint64        `json:"allocs"` // the bytes the process allocated so far, right after it
	Cycles uint64        `json:"cycles"` // the collections it made so far
}

// heapCounters is what a process allocated and collected so far.
type heapCounters struct {
	Allocs uint64 `json:"allocs"`
	Cycles uint64 `json:"cycles"`
}

// collectNow collects this process's heap and measures the collection.
func collectNow() collection {
	u0 := selfUsage()
	runtime.GC()
	u1 := selfUsage()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	c := collection{CPU: u1.cpu - u0.cpu}
	if s[0].Value.Kind() == metrics.KindUint64 && s[1].Value.Kind() == metrics.KindUint64 && s[0].Value.Uint64() > s[1].Value.Uint64() {
		c.Room = s[0].Value.Uint64() - s[1].Value.Uint64()
	}
	h := heapNow()
	c.Allocs, c.Cycles = h.Allocs, h.Cycles
	return c
}

// heapNow reads this process's heap counters.
func heapNow() heapCounters {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	var h heapCounters
	if s[0].Value.Kind() == metrics.KindUint64 {
		h.Allocs = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		h.Cycles = s[1].Value.Uint64()
	}
	return h
}

// share is the part of collection c charged to a put that ended with
// the counters now: c's CPU in proportion to the bytes allocated since
// over c's room. ok is false when a collection fell inside the put (its
// cost is in the put's CPU) or c measured no room.
func (c collection) share(now heapCounters) (d time.Duration, ok bool) {
	if now.Cycles != c.Cycles || c.Room == 0 || now.Allocs < c.Allocs {
		return 0, false
	}
	return time.Duration(float64(c.CPU) * float64(now.Allocs-c.Allocs) / float64(c.Room)), true
}

// collectSubject is where shard process from answers the fleet row's
// requests: "collect" (collectNow) and "counters" (heapNow), in JSON.
func collectSubject(from int) string { return fmt.Sprintf("mms.bench.shard.%d", from) }

// answerCollections subscribes shard process from's answers on nc.
func answerCollections(nc *nats.Conn, from int) (*nats.Subscription, error) {
	return nc.Subscribe(collectSubject(from), func(m *nats.Msg) {
		var v any
		switch string(m.Data) {
		case "collect":
			v = collectNow()
		case "counters":
			v = heapNow()
		default:
			return
		}
		data, err := json.Marshal(v)
		if err == nil {
			_ = m.Respond(data)
		}
	})
}

// askShard sends shard process from the request what and decodes its
// answer into v; a shard that has not subscribed yet (it is still
// warming its heap) is asked again until wait passes or ctx ends.
func askShard(ctx context.Context, nc *nats.Conn, from int, what string, v any, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		m, err := nc.RequestWithContext(ctx, collectSubject(from), []byte(what))
		if errors.Is(err, nats.ErrNoResponders) && backoff.Sleep(ctx, 100*time.Millisecond) {
			continue
		}
		if err != nil {
			return fmt.Errorf("bench: ask shard %d to %s: %w", from, what, err)
		}
		return json.Unmarshal(m.Data, v)
	}
}

// fleetCollections are the collections of a fleet's processes before a
// put: this process's and each shard's, by the index of its first agent.
type fleetCollections struct {
	self   collection
	shards map[int]collection
}

// collectFleet collects the heap of this process and of every shard
// process (shardFrom: the first agent of each), one after the other.
func collectFleet(ctx context.Context, nc *nats.Conn, shardFrom []int) (fleetCollections, error) {
	fc := fleetCollections{self: collectNow(), shards: map[int]collection{}}
	for _, from := range shardFrom {
		var c collection
		if err := askShard(ctx, nc, from, "collect", &c, time.Minute); err != nil {
			return fc, err
		}
		fc.shards[from] = c
	}
	return fc, nil
}

// shares returns the collections' shares charged to the put that just
// ended (see collection.share), summed over the processes, and how many
// processes had a collection inside the put instead.
func (fc fleetCollections) shares(ctx context.Context, nc *nats.Conn) (total time.Duration, inside int, err error) {
	add := func(c collection, now heapCounters) {
		if d, ok := c.share(now); ok {
			total += d
		} else if now.Cycles != c.Cycles {
			inside++
		}
	}
	add(fc.self, heapNow())
	for from, c := range fc.shards {
		var now heapCounters
		if err := askShard(ctx, nc, from, "counters", &now, time.Minute); err != nil {
			return total, inside, err
		}
		add(c, now)
	}
	return total, inside, nil
}
