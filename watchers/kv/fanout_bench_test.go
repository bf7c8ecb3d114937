package kvwatcher

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats.go"
)

// fanTracker counts the watchers that have seen the revision a put is
// waiting for.
type fanTracker struct {
	mu      sync.Mutex
	target  uint64
	left    int
	done    chan struct{}
	counted []uint64 // per watcher: the target it was last counted for
}

// expect starts waiting for every watcher to see rev.
func (f *fanTracker) expect(rev uint64) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target, f.left, f.done = rev, len(f.counted), make(chan struct{})
	return f.done
}

// saw records that watcher i checked revision rev.
func (f *fanTracker) saw(i int, rev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev < f.target || f.counted[i] == f.target || f.left == 0 {
		return
	}
	f.counted[i] = f.target
	if f.left--; f.left == 0 {
		close(f.done)
	}
}

// BenchmarkFanout measures one put until every one of N watch-mode kv
// watchers has checked the new revision, on one embedded server over
// loopback TCP. Each watcher has its own connection, as each agent does, and
// is driven like the agent's Runner drives it. It reports fanout-p50/p99/
// max-µs, the setup time and the growth of this process's resident memory
// (server and clients share the process): rss-conns-MB for the N
// connections, rss-watchers-MB for the N watches (consumers on the server,
// subscriptions and goroutines on the clients).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 500, 1000, 2000} {
		b.Run("watchers="+strconv.Itoa(n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	setup := time.Now()
	s, kv := benchServer(b)
	rssServer := vmRSS()
	conns := make([]*nats.Conn, n)
	for i := range conns {
		conns[i] = benchConn(b, s)
	}
	rssConns := vmRSS()

	ctx, cancel := context.WithCancel(b.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	f := &fanTracker{counted: make([]uint64, n)}
	rev := uint64(1)
	done := f.expect(rev)
	if _, err := kv.Put(ctx, "spec", []byte(`{"serial":0}`)); err != nil {
		b.Fatal(err)
	}
	for i, nc := range conns {
		w := benchWatcher(b, watchers.Deps{Conn: nc, Data: watchertest.NewStore()})
		runner(ctx, &wg, w, func(rev uint64) { f.saw(i, rev) })
	}
	waitFan(b, done, n, "the initial value")
	rssWatchers := vmRSS()
	setupTime := time.Since(setup)

	var samples []time.Duration
	for b.Loop() {
		rev++
		done := f.expect(rev)
		start := time.Now()
		got, err := kv.Put(ctx, "spec", fmt.Appendf(nil, `{"serial":%d}`, rev))
		if err != nil {
			b.Fatal(err)
		}
		if got != rev {
			b.Fatalf("Put() revision = %d, want %d", got, rev)
		}
		waitFan(b, done, n, fmt.Sprintf("revision %d", rev))
		samples = append(samples, time.Since(start))
	}
	reportLatencies(b, "fanout-", samples)
	b.ReportMetric(setupTime.Seconds(), "setup-s")
	if rssServer > 0 {
		b.ReportMetric(float64(rssConns-rssServer)/(1<<20), "rss-conns-MB")
		b.ReportMetric(float64(rssWatchers-rssConns)/(1<<20), "rss-watchers-MB")
	}
}

func waitFan(b *testing.B, done <-chan struct{}, n int, what string) {
	b.Helper()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("not all %d watchers saw %s within 2m", n, what)
	}
}
