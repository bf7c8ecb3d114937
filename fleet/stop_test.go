package fleet_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus/nodestatustest"
)

// TestStopFreesAWatchBehind: a Watcher stopped while more documents wait
// than its status watch's channel holds (a large fleet that nobody read
// for a moment: `mms status` done, a page closed) leaves no goroutine of
// nats.go blocked behind it.
func TestStopFreesAWatchBehind(t *testing.T) {
	b := newBench(t)
	w, err := fleet.Follow(t.Context(), b.js, fleet.Options{StatusOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		b.putDoc(nodestatustest.Applied(fmt.Sprintf("node%03d.example", i), 1, time.Now()))
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if natstest.BlockedWatchCallbacks() == 0 {
			return errors.New("the status watch's callback is not waiting yet")
		}
		return nil
	})
	w.Stop()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := natstest.BlockedWatchCallbacks(); n > 0 {
			return fmt.Errorf("%d watch callbacks still blocked after Stop", n)
		}
		return nil
	})
}
