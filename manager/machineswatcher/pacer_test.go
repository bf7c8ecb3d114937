package machineswatcher

import (
	"testing"
	"testing/synctest"
	"time"
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
