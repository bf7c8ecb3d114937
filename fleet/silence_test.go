package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/nodestatus/nodestatustest"
)

// stalledWatch is a KV watch whose consumer died without the client
// library noticing: it neither delivers nor ends.
type stalledWatch struct{ updates chan jetstream.KeyValueEntry }

func (s stalledWatch) Updates() <-chan jetstream.KeyValueEntry { return s.updates }
func (s stalledWatch) Stop() error                             { return nil }

// TestNextRestartsASilentStatusWatch: a status watch that delivers
// nothing for longer than two heartbeats of the agents it follows (the
// server holding its consumer was killed; seen in
// TestFleetSurvivesEachServerKilled, where `mms put --wait` waited three
// minutes on a rollout every agent had finished) is started again, and
// the documents written meanwhile arrive; one that is quiet for less is
// left alone.
func TestNextRestartsASilentStatusWatch(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	status, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: nodestatus.Bucket, History: 1, MaxValueSize: nodestatus.MaxDocumentSize})
	if err != nil {
		t.Fatal(err)
	}
	put := func(identity string, serial uint64) {
		t.Helper()
		d := nodestatustest.Applied(identity, serial, time.Now())
		d.Heartbeat = "1s"
		data, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := status.Put(t.Context(), nodestatus.Key(identity), data); err != nil {
			t.Fatal(err)
		}
	}
	put("a.example", 1)
	w, err := Follow(t.Context(), js, Options{StatusOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	clock := time.Now()
	w.now = func() time.Time { return clock }
	live := w.status
	t.Cleanup(func() { _ = live.Stop() })
	w.status = stalledWatch{updates: make(chan jetstream.KeyValueEntry)}
	w.lastStatus = clock
	put("b.example", 1)

	// Quiet for 4 s: under 5 s (two 1 s heartbeats, at least 5 s).
	clock = clock.Add(4 * time.Second)
	if changed, err := w.Next(t.Context(), 2*nodestatus.SilenceCheck+nodestatus.SilenceCheck/2); err != nil || changed {
		t.Fatalf("Next on a watch quiet for 4s = %v, %v; want no change (the watch is not given up yet)", changed, err)
	}
	if _, ok := w.status.(stalledWatch); !ok {
		t.Fatal("a watch quiet for 4s was started again")
	}

	// Quiet for 6 s: started again, and b's document arrives.
	clock = clock.Add(2 * time.Second)
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := w.Next(t.Context(), 100*time.Millisecond); err != nil {
			return err
		}
		if _, ok := w.t.docs[nodestatus.Key("b.example")]; !ok {
			return errNotYet
		}
		return nil
	})
	if _, ok := w.status.(stalledWatch); ok {
		t.Error("the silent watch was not replaced")
	}
}

var errNotYet = errors.New("b's document has not arrived")

// TestStartWatchRetriesTimeouts: a watch whose start timed out or found no
// responder (a server killed, a leader being elected) is tried again
// until it starts or ctx ends; any other error ends it at once.
func TestStartWatchRetriesTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := stalledWatch{updates: make(chan jetstream.KeyValueEntry)}
		for _, transient := range []error{context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders} {
			tries := 0
			kw, err := startWatch(t.Context(), func() (jetstream.KeyWatcher, error) {
				if tries++; tries < 3 {
					return nil, fmt.Errorf("watch: %w", transient)
				}
				return started, nil
			})
			if err != nil || kw != started || tries != 3 {
				t.Errorf("after %v twice: startWatch = %v, %v after %d tries; want the watch after 3", transient, kw, err, tries)
			}
		}
		denied := errors.New("nats: permissions violation for subscription")
		tries := 0
		if _, err := startWatch(t.Context(), func() (jetstream.KeyWatcher, error) { tries++; return nil, denied }); !errors.Is(err, denied) || tries != 1 {
			t.Errorf("startWatch on a permission error = %v after %d tries; want it at once", err, tries)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		tries = 0
		if _, err := startWatch(ctx, func() (jetstream.KeyWatcher, error) { tries++; return nil, nats.ErrTimeout }); !errors.Is(err, nats.ErrTimeout) || tries != 2 {
			t.Errorf("startWatch timing out until ctx ends = %v after %d tries; want the last error after 2 (one a second)", err, tries)
		}
	})
}
