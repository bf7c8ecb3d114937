package machineswatcher

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/watchers/watchertest"
)

// TestPacer: events go through at most once a second; one within the
// second is deferred to its end, not dropped, and several there make one.
func TestPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(time.Second)
		defer p.stop()
		start := time.Now()
		if !p.ready(start) {
			t.Fatal("the first event was held back")
		}
		for _, d := range []time.Duration{10 * time.Millisecond, 490 * time.Millisecond} {
			time.Sleep(d)
			if p.ready(time.Now()) {
				t.Fatalf("an event %v after the last one went through", time.Since(start))
			}
		}
		<-p.due()
		if got := time.Since(start); got != time.Second {
			t.Errorf("the deferred event was due after %v, want 1s", got)
		}
		p.stop()
		if !p.ready(time.Now()) {
			t.Error("the deferred event was held back again when due")
		}
		if p.ready(time.Now()) || p.due() == nil {
			t.Error("a second event at once went through, or was not deferred")
		}
	})
}

// notifier is a FleetView whose changes the test sends.
type notifier struct{ changes chan struct{} }

func (n notifier) Nodes(context.Context, string) ([]rollout.Node, error) { return nil, nil }
func (n notifier) Changes() <-chan struct{}                              { return n.changes }

// TestStreamRunsAPassOnFleetChanges: while the last pass held an entry on
// what the fleet reports, a change of a node's report runs a pass, at most
// one a second (a change within the second runs one at its end); when no
// entry is held, a change runs none.
func TestStreamRunsAPassOnFleetChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fleet := notifier{changes: make(chan struct{})}
		w := &Watcher{DataItem: "spec", Fleet: fleet, data: watchertest.NewStore(), log: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(t.Context())
		var passes atomic.Int32
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = w.Stream(ctx, func() { passes.Add(1) })
		}()
		change := func() {
			t.Helper()
			select {
			case fleet.changes <- struct{}{}:
			case <-time.After(time.Minute):
				t.Fatal("Stream does not follow the fleet's changes")
			}
			synctest.Wait()
		}

		change()
		if n := passes.Load(); n != 0 {
			t.Errorf("a change with nothing held ran %d passes, want none", n)
		}
		w.checks.setFleetWait(true)
		change()
		if n := passes.Load(); n != 1 {
			t.Errorf("a change while held ran %d passes, want 1", n)
		}
		change()
		change()
		if n := passes.Load(); n != 1 {
			t.Errorf("two more changes within the second ran %d passes in all, want still 1", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := passes.Load(); n != 2 {
			t.Errorf("at the end of the second, %d passes in all, want 2 (the deferred one)", n)
		}
		cancel()
		<-done
	})
}
