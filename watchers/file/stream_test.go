package filewatcher

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

// runStream runs w.Stream until the test ends and counts its triggers.
func runStream(t *testing.T, w watchers.Watcher) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.(watchers.Streamer).Stream(ctx, func() { n.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Stream() after cancel = %v, want nil", err)
		}
	})
	return &n
}

func TestStreamStatMode(t *testing.T) {
	d := watchertest.Deps(t)
	path := filepath.Join(d.Dir, "f")
	write("a")(t, path)
	w := watchertest.BuildWith(t, d, "file", `{"path":"f","gather_initial_state":true}`)
	n := runStream(t, w)
	// The watch starts asynchronously: keep changing the file until a
	// notification arrives.
	i := 0
	natstest.Eventually(t, 10*time.Second, func() error {
		i++
		write(strings.Repeat("b", i))(t, path)
		if n.Load() == 0 {
			return errors.New("no trigger yet")
		}
		return nil
	})
	res, err := w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Success {
		t.Errorf("Check() after a notification = %v, %v; want success", res.Outcome, err)
	}
}

func TestStreamContentMode(t *testing.T) {
	d := watchertest.Deps(t)
	path := filepath.Join(d.Dir, "f")
	w := watchertest.BuildWith(t, d, "file", managed)
	if _, err := w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	n := runStream(t, w)
	natstest.Eventually(t, 10*time.Second, func() error {
		write("tampered")(t, path)
		if n.Load() == 0 {
			return errors.New("no trigger yet")
		}
		return nil
	})
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Errorf("Check() after tampering = %v, %v; want success", res.Outcome, err)
	}
	assertFile(t, path, "hello\n", 0o640)
}

func TestStreamMissingDirectory(t *testing.T) {
	w := watchertest.Build(t, "file", `{"path":"nodir/f"}`)
	err := w.(watchers.Streamer).Stream(t.Context(), func() {})
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Stream() err = %v, want ENOENT", err)
	}
}
