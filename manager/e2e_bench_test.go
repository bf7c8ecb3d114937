package manager_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
	machineswatcher "github.com/mms-io/mms/manager/machineswatcher"
)

// BenchmarkPutToInstalled measures, on a running node, the time from a KV
// put of a new spec to the machines watcher's event saying the machine was
// updated: each op publishes the next serial, alternating between two
// versions of one machine, so every op downloads, verifies, swaps in and
// loads an archive. Besides ns/op it reports check-ns/op, the reconcile
// pass alone (the event's previous_run_time); the rest is the kv watch,
// the transition that pokes the machines watcher (paced by the agent when
// transitions come quickly) and event delivery.
func BenchmarkPutToInstalled(b *testing.B) {
	n := newE2ENode(b)
	v1 := buildArchive(b, n.files, "alpha", "1", recordingMachine("alpha", "1.0.0", "v1", ""))
	v2 := buildArchive(b, n.files, "alpha", "2", recordingMachine("alpha", "2.0.0", "v2", ""))
	n.start()

	evs := make(chan *nats.Msg, 64)
	sub, err := n.nc.ChanSubscribe(agent.WatcherStateSubject("machines"), evs)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	// await returns the check time of the machines event of serial.
	await := func(serial uint64) time.Duration {
		timeout := time.After(e2eWait)
		for {
			select {
			case msg := <-evs:
				var ev event.Event
				var st machineswatcher.State
				if err := json.Unmarshal(msg.Data, &ev); err != nil {
					b.Fatal(err)
				}
				if err := ev.DataAs(&st); err != nil {
					b.Fatal(err)
				}
				if st.Serial != serial {
					continue
				}
				if len(st.Results) != 1 || st.Results[0].Outcome == manager.EntryFailed {
					b.Fatalf("serial %d results = %+v, want alpha installed or updated", serial, st.Results)
				}
				return st.PreviousRunTime
			case <-timeout:
				b.Fatalf("no machines event for serial %d after %v", serial, e2eWait)
			}
		}
	}
	env, serial := n.seal(b, v1.entry(""))
	n.put(b, env)
	await(serial)

	var check time.Duration
	versions := []testArchive{v2, v1}
	i := 0
	for b.Loop() {
		env, serial := n.seal(b, versions[i%2].entry(""))
		i++
		n.put(b, env)
		check += await(serial)
	}
	b.ReportMetric(float64(check.Nanoseconds())/float64(i), "check-ns/op")
}
