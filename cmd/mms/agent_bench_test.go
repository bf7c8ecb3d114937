package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
)

// bannerWatch is a stderr that signals when the agent prints its banner.
type bannerWatch struct {
	ready chan struct{}

	mu   sync.Mutex
	once sync.Once
}

func (w *bannerWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte("listening on nats://")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// BenchmarkAgentStart measures `mms agent` from the command line to its
// banner: the embedded server accepting connections, the agent connected,
// the buckets and the events stream in place. "cold" starts with an empty
// state directory, "warm" with the store of a previous run.
func BenchmarkAgentStart(b *testing.B) {
	start := func(b *testing.B, state string) {
		stderr := &bannerWatch{ready: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		args := []string{"agent", "--insecure-unsigned", "--state-dir", state, "--listen", "127.0.0.1:0", "--log-level", "error"}
		go func() { done <- run(ctx, args, strings.NewReader(""), io.Discard, stderr) }()
		select {
		case <-stderr.ready:
		case code := <-done:
			cancel()
			b.Fatalf("agent exited with %d before its banner", code)
		}
		b.StopTimer()
		cancel()
		if code := <-done; code != 0 {
			b.Fatalf("agent exit code = %d", code)
		}
		b.StartTimer()
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			state := b.TempDir()
			b.StartTimer()
			start(b, state)
		}
	})
	b.Run("warm", func(b *testing.B) {
		state := b.TempDir()
		start(b, state)
		for b.Loop() {
			start(b, state)
		}
	})
}
