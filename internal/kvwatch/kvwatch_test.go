package kvwatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/kvwatch"
	"github.com/mms-io/mms/internal/natstest"
)

// behindWatch returns a watch of a bucket of 300 keys whose callback is
// blocked: nobody read its first 256 entries.
func behindWatch(t *testing.T, ctx context.Context) jetstream.KeyWatcher {
	t.Helper()
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "STATUS"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := kv.Put(t.Context(), fmt.Sprintf("node%d", i), []byte("doc")); err != nil {
			t.Fatal(err)
		}
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(w.Updates()); n < cap(w.Updates()) {
			return fmt.Errorf("%d entries waiting, want the channel full (%d)", n, cap(w.Updates()))
		}
		if natstest.BlockedWatchCallbacks() == 0 {
			return errors.New("no callback waiting")
		}
		return nil
	})
	return w
}

func wantNoCallback(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := natstest.BlockedWatchCallbacks(); n > 0 {
			return fmt.Errorf("%d watch callbacks still blocked", n)
		}
		return nil
	})
}

func TestStopReleasesABlockedCallback(t *testing.T) {
	w := behindWatch(t, t.Context())
	if err := kvwatch.Stop(w); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	wantNoCallback(t)
}

func TestDiscardAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	w := behindWatch(t, ctx)
	cancel()
	kvwatch.Discard(w)
	wantNoCallback(t)
}

func TestNil(t *testing.T) {
	kvwatch.Discard(nil)
	if err := kvwatch.Stop(nil); err != nil {
		t.Errorf("Stop(nil) = %v", err)
	}
}
