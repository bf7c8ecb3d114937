package syncbuf

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestBufferConcurrentWritesAndReads(t *testing.T) {
	var b Buffer
	log := b.Logger(slog.LevelInfo)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				log.Info("line")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "msg=line\n"); n != 200 {
		t.Errorf("String() has %d log lines, want 200", n)
	}
	log.Debug("hidden")
	if strings.Contains(b.String(), "hidden") {
		t.Errorf("Logger(info) wrote a debug record")
	}
}
