package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
)

// TestNodeCannotNudgeTheFleet is issue 23's fourth attack, on a real
// nats-server configured by `mms nats-config` and a real agent process:
// node web1 may not publish reconcile nudges, but it may create consumers
// on the status stream (to read other nodes' status), and nats-server
// (v2.15, nats-io/nats-server#8274) does not check a push consumer's
// deliver subject against its creator's permissions. So web1 makes the
// server deliver its own status writes, and the delete markers of its key
// (empty, like a nudge for every node), to mms.reconcile. Agent web2
// neither reconciles for them nor logs a line per message: one line, then
// a summary a minute.
func TestNodeCannotNudgeTheFleet(t *testing.T) {
	dir, _, pub, f := newFleet(t, "web1", "web2")
	operator := f.as("operator")
	web2 := f.startNode(t, dir, pub, "web2")
	pollStatus(t, operator, "web2", func(*nodestatus.Document) error { return nil })
	sent, answered := 0, 0 // the operator's nudges, and those web2 answered in time
	nudge := func() error {
		sent++
		r := mms(t, "", append([]string{"reconcile", "--wait", "2s"}, operator...)...)
		if r.stdout != "nudged 1 node: web2\n" {
			return fmt.Errorf("operator's mms reconcile = %q %s", r.stdout, r.stderr)
		}
		answered++
		return nil
	}
	natstest.Eventually(t, e2eTimeout, nudge) // web2 listens for nudges

	_, js := f.connect(t, "node-web1")
	ctx := t.Context()
	cons, err := js.CreatePushConsumer(ctx, "KV_"+nodestatus.Bucket, jetstream.ConsumerConfig{
		Name: "nudger", DeliverSubject: manager.NudgeSubject, FilterSubject: "$KV." + nodestatus.Bucket + "." + nodestatus.Key("web1"),
		DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckNonePolicy, IdleHeartbeat: time.Second,
	})
	if err != nil {
		t.Logf("the server refuses web1's consumer (nats-io/nats-server#8274 fixed?): %v", err)
		return
	}
	kv, err := js.KeyValue(ctx, nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 1000
	var last uint64
	for i := range writes {
		if i%100 == 50 {
			err = kv.Delete(ctx, nodestatus.Key("web1"))
		} else {
			last, err = kv.Put(ctx, nodestatus.Key("web1"), []byte(`{"version":2,"identity":"web1","updated_at":"2026-12-04T00:00:00Z","heartbeat":"30s"}`))
		}
		if err != nil {
			t.Fatalf("web1's write %d: %v", i, err)
		}
	}
	// (The bucket keeps 5 values per key: writes the consumer had not
	// reached yet when they were replaced are never delivered.)
	natstest.Eventually(t, e2eTimeout, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.Delivered.Stream < last {
			return fmt.Errorf("the consumer delivered up to stream sequence %d of %d", info.Delivered.Stream, last)
		}
		t.Logf("the consumer delivered %d of web1's %d writes to %s", info.Delivered.Consumer, writes, manager.NudgeSubject)
		return nil
	})
	// Everything delivered is ahead of this real nudge on web2's
	// subscription: once web2 answers it, it has seen them all.
	natstest.Eventually(t, e2eTimeout, nudge)

	log := web2.stderr.String()
	if n := strings.Count(log, "reconcile nudge received"); n < answered || n > sent {
		t.Errorf("web2 reconciled for %d nudges, want the operator's only (%d sent, %d answered in time):\n%.3000s", n, sent, answered, log)
	}
	warnings := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "nudge") {
			warnings++
		}
	}
	if warnings > 1 {
		t.Errorf("web2 logged %d warnings about nudges for web1's %d deliveries, want at most one:\n%.3000s", warnings, writes, log)
	}
	if !strings.Contains(log, `msg="ignoring a message on mms.reconcile that is no reconcile nudge"`) ||
		!strings.Contains(log, `error="not a reconcile nudge: a JetStream consumer delivered it (reply subject \"$JS.ACK.KV_MACHINES_STATUS.nudger.`) {
		t.Errorf("web2 did not say why it ignores web1's deliveries:\n%.3000s", log)
	}
}
