// Package natstest starts real, embedded NATS servers for tests: a JetStream
// server on a random loopback port with its store in t.TempDir, or a
// JetStream cluster of several (RunCluster), shut down when the test ends. It
// never mocks NATS.
package natstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/internal/jscluster"
)

// Options returns the server options RunJetStream uses: loopback, a random
// port, JetStream with its store under dir, no logging and no signal handlers.
func Options(dir string) *server.Options {
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}
}

// RunJetStream starts a JetStream-enabled server for the test and stops it
// when the test ends.
func RunJetStream(t testing.TB) *server.Server {
	t.Helper()
	return Run(t, Options(t.TempDir()))
}

// Run starts a server with opts and stops it when the test ends.
func Run(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("natstest: server not ready after 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens a client connection to s over loopback TCP (so it can
// reconnect after a restart, unlike an in-process connection) and closes it
// when the test ends.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", s.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// DeadURL returns a loopback nats:// URL, and its port, on which nothing
// listens (yet): a server a test starts later, or one never there.
func DeadURL(tb testing.TB) (string, int) {
	tb.Helper()
	ports, err := jscluster.FreePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), ports[0]
}

// Eventually polls f every few milliseconds until it returns nil or timeout
// passes, then fails the test with f's last error. Use it instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	waits := backoff.Policy{First: time.Millisecond, Max: 50 * time.Millisecond}
	for n := 1; ; n++ {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(waits.Delay(n))
	}
}
