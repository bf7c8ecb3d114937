package kvwatcher

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// dropCounter is a slog handler that counts the JetStream API requests a
// server dropped: it drops its whole queue of them, and says how many, when
// the queue reaches its limit (10,000 by default).
type dropCounter struct{ dropped atomic.Int64 }

func (d *dropCounter) Enabled(context.Context, slog.Level) bool { return true }
func (d *dropCounter) WithAttrs([]slog.Attr) slog.Handler       { return d }
func (d *dropCounter) WithGroup(string) slog.Handler            { return d }
func (d *dropCounter) Handle(_ context.Context, r slog.Record) error {
	// "JetStream API queue limit reached, dropping 10000 requests"
	_, rest, ok := strings.Cut(r.Message, "limit reached, dropping ")
	if !ok {
		return nil
	}
	if n, err := strconv.Atoi(strings.TrimSuffix(rest, " requests")); err == nil {
		d.dropped.Add(int64(n))
	}
	return nil
}

// BenchmarkRestartHerd restarts the one server of N watch-mode kv watchers
// (each with its own reconnecting connection, as each agent has) and puts
// a new value as soon as the server takes it: one iteration is the time
// until every watcher checked that value. Every watcher re-creates its
// watch after the reconnect, so their requests for a new consumer (and for
// deleting the old one) arrive together; when the server's JetStream API
// queue reaches its limit, the server drops the whole queue, and the
// watchers whose requests were dropped try again after their backoff. It
// reports restart-p50/max-µs and dropped-requests, the API requests the
// server dropped per restart.
//
// With the server's default queue limit (10,000) the requests of up to
// 8,000 watchers did not fill it on a 2-CPU machine; the case with a queue
// of 50 for 1,000 watchers stands for a fleet far larger than one machine
// holds, where only the backoff's randomness keeps the retries from filling
// the queue again and again.
func BenchmarkRestartHerd(b *testing.B) {
	for _, bc := range []struct{ watchers, queue int }{{1000, 0}, {5000, 0}, {1000, 50}} {
		queue := "default"
		if bc.queue > 0 {
			queue = strconv.Itoa(bc.queue)
		}
		b.Run(fmt.Sprintf("watchers=%d/api-queue=%s", bc.watchers, queue), func(b *testing.B) { benchRestartHerd(b, bc.watchers, bc.queue) })
	}
}

// benchRestartHerd runs BenchmarkRestartHerd for n watchers and a JetStream
// API queue limit of queue requests (0: the server's default).
func benchRestartHerd(b *testing.B, n, queue int) {
	drops := &dropCounter{}
	cfg := natsbox.ServerConfig{
		Port: -1, StoreDir: b.TempDir(), MaxConsumers: -1, Log: slog.New(drops),
		Configure: func(o *server.Options) { o.JetStreamRequestQueueLimit = int64(queue) },
	}
	start := func() *server.Server {
		s, err := natsbox.StartServer(b.Context(), cfg)
		if err != nil {
			b.Fatalf("StartServer() = %v", err)
		}
		return s
	}
	s := start()
	cfg.Port = s.Addr().(*net.TCPAddr).Port
	defer func() { s.Shutdown(); s.WaitForShutdown() }()

	ctx, cancel := context.WithCancel(b.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	admin := herdClient(b, s.ClientURL())
	js, err := jetstream.New(admin.Conn)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MACHINES"})
	if err != nil {
		b.Fatalf("CreateKeyValue() = %v", err)
	}
	f := &fanTracker{counted: make([]uint64, n)}
	rev := uint64(1)
	done := f.expect(rev)
	if _, err := kv.Put(ctx, "spec", []byte(`{"serial":0}`)); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		c := herdClient(b, s.ClientURL())
		w := benchWatcher(b, watchers.Deps{Conn: c.Conn, Data: watchertest.NewStore(), OnReconnect: c.Status.OnReconnect})
		runner(ctx, &wg, w, func(rev uint64) { f.saw(i, rev) })
	}
	waitFan(b, done, n, "the initial value")

	var samples []time.Duration
	dropped0 := drops.dropped.Load()
	for b.Loop() {
		begin := time.Now()
		s.Shutdown()
		s.WaitForShutdown()
		s = start()
		rev++
		done := f.expect(rev)
		for {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			got, err := kv.Put(pctx, "spec", fmt.Appendf(nil, `{"serial":%d}`, rev))
			cancel()
			if err == nil {
				rev = got // higher when an earlier try was stored but its ack lost
				break
			}
			if ctx.Err() != nil {
				b.Fatal(err)
			}
		}
		waitFan(b, done, n, fmt.Sprintf("revision %d after the restart", rev))
		samples = append(samples, time.Since(begin))
	}
	reportLatencies(b, "restart-", samples)
	b.ReportMetric(float64(drops.dropped.Load()-dropped0)/float64(len(samples)), "dropped-requests")
}

// herdClient is a natsbox client (it reconnects, with the agents' backoff,
// and runs OnReconnect hooks) closed when the benchmark ends.
func herdClient(b *testing.B, url string) *natsbox.Client {
	b.Helper()
	c, err := natsbox.Connect(b.Context(), natsbox.ConnectConfig{Servers: []string{url}, FailFast: true})
	if err != nil {
		b.Fatalf("natsbox.Connect(%s) = %v", url, err)
	}
	b.Cleanup(c.Close)
	return c
}
