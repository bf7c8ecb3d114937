package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestCollectionShare(t *testing.T) {
	c := collection{CPU: 300 * time.Millisecond, Room: 400 << 20, Allocs: 1000, Cycles: 7}
	tests := []struct {
		name   string
		now    heapCounters
		want   time.Duration
		wantOK bool
	}{
		{"a quarter of the room", heapCounters{Allocs: 1000 + 100<<20, Cycles: 7}, 75 * time.Millisecond, true},
		{"nothing allocated", heapCounters{Allocs: 1000, Cycles: 7}, 0, true},
		{"the whole room", heapCounters{Allocs: 1000 + 400<<20, Cycles: 7}, 300 * time.Millisecond, true},
		{"a collection inside the put", heapCounters{Allocs: 1000 + 500<<20, Cycles: 8}, 0, false},
		{"counters of another process", heapCounters{Allocs: 10, Cycles: 7}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.share(tt.now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("share(%+v) = %v, %v; want %v, %v", tt.now, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if _, ok := (collection{CPU: time.Second, Cycles: 1}).share(heapCounters{Allocs: 5, Cycles: 1}); ok {
		t.Error("a collection that measured no room was shared")
	}
}

// sink keeps an allocation alive for the test below.
var sink []byte

// TestCollectFleet: a fleet row collects a shard process's heap over
// NATS before a put and asks it what it allocated after; a shard that
// does not answer is an error that names it.
func TestCollectFleet(t *testing.T) {
	env, err := startNATS(t.Context(), t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	// The shard's side runs in this process: it collects this heap.
	sub, err := answerCollections(env.nc, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	before := heapNow()
	fc, err := collectFleet(t.Context(), env.nc, []int{7})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := fc.shards[7]
	if !ok || len(fc.shards) != 1 {
		t.Fatalf("collections of the shards %+v, want shard 7's", fc.shards)
	}
	if c.Cycles <= before.Cycles || fc.self.Cycles <= before.Cycles || c.Room == 0 || c.Allocs < before.Allocs {
		t.Errorf("shard 7 collected %+v, this process %+v, after %+v: want a collection each, with room", c, fc.self, before)
	}
	sink = make([]byte, 1<<20)
	total, inside, err := fc.shares(t.Context(), env.nc)
	if err != nil || total < 0 || inside < 0 || inside > 2 {
		t.Errorf("shares after the put = %v, %d inside, %v", total, inside, err)
	}
	var none collection
	if err := askShard(t.Context(), env.nc, 8, "collect", &none, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "shard 8") {
		t.Errorf("asking a shard that is not there = %v, want an error naming it", err)
	}
	// A bench that stops does not wait out a missing shard.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	began := time.Now()
	if err := askShard(ctx, env.nc, 8, "collect", &none, time.Minute); err == nil || time.Since(began) > 10*time.Second {
		t.Errorf("asking a missing shard with a cancelled ctx = %v after %v, want an error at once", err, time.Since(began))
	}
}
