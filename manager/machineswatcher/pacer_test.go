package machineswatcher

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager"
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

// countingStore is a DataStore that counts the reads of its items.
type countingStore struct {
	*watchertest.Store
	gets atomic.Int32
}

func (s *countingStore) Get(key string) (any, bool) {
	s.gets.Add(1)
	return s.Store.Get(key)
}

// TestStreamLooksForNewerSpecsOnlyDuringChecks: Stream reads the data item
// every supersedePoll while a check runs and not at all between checks,
// so that an idle node (or a fleet of thousands in one process) has no
// timer of it to wake for; ignored nudges are summed up in one line once
// manager.NudgeLogInterval has passed, with no timer before the first.
func TestStreamLooksForNewerSpecsOnlyDuringChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := &countingStore{Store: watchertest.NewStore()}
		logs := &syncbuf.Buffer{}
		w := &Watcher{DataItem: "spec", data: data, log: slog.New(slog.NewTextHandler(logs, nil))}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = w.Stream(ctx, func() {})
		}()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := data.gets.Load(); n != 0 {
			t.Errorf("with no check running, Stream read the data item %d times in a minute, want 0", n)
		}

		_, finish := w.checks.start(ctx, "a spec")
		time.Sleep(supersedePoll*4 + supersedePoll/2)
		synctest.Wait()
		if n := data.gets.Load(); n != 4 {
			t.Errorf("during a check of %v, Stream read the data item %d times, want 4 (every %v)", supersedePoll*4+supersedePoll/2, n, supersedePoll)
		}
		finish()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := data.gets.Load(); n != 5 {
			t.Errorf("a minute after the check ended, Stream had read the data item %d times, want 5 (one more tick, which found no check)", n)
		}

		bad := &nats.Msg{Subject: manager.NudgeSubject, Data: []byte("{not json")}
		for range 4 {
			w.onNudge(bad, func() { t.Error("a malformed nudge triggered a check") })
		}
		synctest.Wait()
		if got := strings.Count(logs.String(), "ignoring a malformed reconcile nudge"); got != 1 {
			t.Errorf("%d lines for the first ignored nudge, want 1:\n%s", got, logs)
		}
		time.Sleep(manager.NudgeLogInterval - time.Second)
		synctest.Wait()
		if strings.Contains(logs.String(), "ignored more reconcile nudges") {
			t.Errorf("the summary was logged before %v had passed:\n%s", manager.NudgeLogInterval, logs)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := strings.Count(logs.String(), `msg="ignored more reconcile nudges" count=3`); got != 1 {
			t.Errorf("%d summaries of the 3 nudges ignored after the first, want 1:\n%s", got, logs)
		}
		cancel()
		<-done
	})
}
