package natsbox

import (
	"context"
	"testing"
)

// BenchmarkStartServer measures StartServer until the server accepts
// connections (JetStream on, fresh store); shutdown is not timed.
func BenchmarkStartServer(b *testing.B) {
	for b.Loop() {
		ctx, cancel := context.WithCancel(b.Context())
		s, err := StartServer(ctx, ServerConfig{Port: -1, StoreDir: b.TempDir()})
		if err != nil {
			b.Fatalf("StartServer() = %v", err)
		}
		b.StopTimer()
		cancel()
		s.WaitForShutdown()
		b.StartTimer()
	}
}
