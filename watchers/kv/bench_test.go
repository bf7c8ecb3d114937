package kvwatcher

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchServer starts an embedded JetStream server (unlimited consumers per
// stream) for a benchmark and returns it with the MACHINES bucket, reached
// over a loopback TCP connection.
func benchServer(b *testing.B) (*server.Server, jetstream.KeyValue) {
	b.Helper()
	s, err := natsbox.StartServer(b.Context(), natsbox.ServerConfig{Port: -1, StoreDir: b.TempDir(), MaxConsumers: -1})
	if err != nil {
		b.Fatalf("StartServer() = %v", err)
	}
	b.Cleanup(s.WaitForShutdown)
	nc := benchConn(b, s)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.CreateKeyValue(b.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"})
	if err != nil {
		b.Fatalf("CreateKeyValue() = %v", err)
	}
	return s, kv
}

func benchConn(b *testing.B, s *server.Server) *nats.Conn {
	b.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatalf("nats.Connect(%s) = %v", s.ClientURL(), err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// benchWatcher builds a watch-mode kv watcher of the key "spec" with d's
// connection, data store and reconnect hook (the rest of d is filled in).
func benchWatcher(b *testing.B, d watchers.Deps) *Watcher {
	b.Helper()
	d.Machine, d.Watcher, d.Log = "bench", "spec", slog.New(slog.DiscardHandler)
	w, err := watchertest.New(d, "kv", `{"bucket":"MACHINES","key":"spec"}`)
	if err != nil {
		b.Fatalf("build kv watcher: %v", err)
	}
	return w.(*Watcher)
}

// runner runs w like the agent's Runner: Stream in a goroutine, Check on
// every trigger, and seen called with the revision of every check's entry.
// It stops when ctx is done; wait for wg.
func runner(ctx context.Context, wg *sync.WaitGroup, w *Watcher, seen func(rev uint64)) {
	trig := make(chan struct{}, 1)
	wg.Go(func() {
		w.Stream(ctx, func() {
			select {
			case trig <- struct{}{}:
			default:
			}
		})
	})
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-trig:
				res, err := w.Check(ctx)
				if st, ok := res.State.(State); ok && err == nil {
					seen(st.Revision)
				}
			}
		}
	})
}

// reportLatencies reports samples as the benchmark's custom metrics.
func reportLatencies(b *testing.B, prefix string, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	q := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(p*float64(len(samples))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(q(0.50), prefix+"p50-µs")
	b.ReportMetric(q(0.99), prefix+"p99-µs")
	b.ReportMetric(float64(samples[len(samples)-1].Nanoseconds())/1e3, prefix+"max-µs")
}

// BenchmarkPutToWatcher measures the latency from the start of a put until
// the end of the watcher's Check that saw the new revision (and stored the
// value in the machine data), over loopback TCP to an embedded server, as
// check-p50-µs, check-p99-µs and check-max-µs. "memory" stores into an
// in-memory store; "file" into the agent's FileDataStore, which writes and
// fsyncs the data file on every change.
func BenchmarkPutToWatcher(b *testing.B) {
	for _, bc := range []struct {
		name  string
		store func(b *testing.B) watchers.DataStore
		size  int
	}{
		{name: "store=memory/value=16B", size: 16, store: func(*testing.B) watchers.DataStore { return watchertest.NewStore() }},
		{name: "store=memory/value=16KiB", size: 16 << 10, store: func(*testing.B) watchers.DataStore { return watchertest.NewStore() }},
		{name: "store=file/value=16B", size: 16, store: func(b *testing.B) watchers.DataStore {
			s, err := agent.OpenDataStore(b.TempDir(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, kv := benchServer(b)
			w := benchWatcher(b, watchers.Deps{Conn: benchConn(b, s), Data: bc.store(b)})
			ctx, cancel := context.WithCancel(b.Context())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()

			type seenAt struct {
				rev uint64
				at  time.Time
			}
			seen := make(chan seenAt, 1)
			runner(ctx, &wg, w, func(rev uint64) { seen <- seenAt{rev, time.Now()} })
			value := func(i int) []byte {
				v := fmt.Sprintf(`{"serial":%d,"pad":"`, i)
				return []byte(v + strings.Repeat("x", max(0, bc.size-len(v)-2)) + `"}`)
			}
			waitRev := func(rev uint64) time.Time {
				for {
					if s := <-seen; s.rev >= rev {
						return s.at
					}
				}
			}
			rev, err := kv.Put(ctx, "spec", value(0))
			if err != nil {
				b.Fatal(err)
			}
			waitRev(rev)

			var checks []time.Duration
			for i := 1; b.Loop(); i++ {
				start := time.Now()
				rev, err := kv.Put(ctx, "spec", value(i))
				if err != nil {
					b.Fatal(err)
				}
				checks = append(checks, waitRev(rev).Sub(start))
			}
			reportLatencies(b, "check-", checks)
		})
	}
}

// vmRSS returns this process's resident set size in bytes from
// /proc/self/status, or 0 where that is not available. It first returns
// freed memory to the system, so that growth between two readings is what
// the code in between still holds.
func vmRSS() int64 {
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
