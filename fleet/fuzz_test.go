package fleet_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// entry is a KV entry as a watch delivers it.
type kvEntry struct {
	bucket, key string
	value       []byte
	revision    uint64
	op          jetstream.KeyValueOp
}

func (e kvEntry) Bucket() string                  { return e.bucket }
func (e kvEntry) Key() string                     { return e.key }
func (e kvEntry) Value() []byte                   { return e.value }
func (e kvEntry) Revision() uint64                { return e.revision }
func (e kvEntry) Created() time.Time              { return time.Time{} }
func (e kvEntry) Delta() uint64                   { return 0 }
func (e kvEntry) Operation() jetstream.KeyValueOp { return e.op }

// FuzzTrackerApply feeds a tracker status documents and a spec written by
// anyone who can publish: whatever the bytes, applying them and computing
// every view (nodes, rollouts, a wait's verdict, JSON) must not fail.
func FuzzTrackerApply(f *testing.F) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	web := entry("web", "2.0.1")
	web.Rollout = &spec.Rollout{Waves: []string{"1", "50%", "100%"}, Pause: spec.Duration(time.Minute)}
	web.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(time.Minute)}
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 2, IssuedAt: now, Machines: []spec.Machine{web}})
	if err != nil {
		f.Fatal(err)
	}
	seed := func(d nodestatus.Document) []byte {
		b, err := json.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	held := doc("w2", 2, now)
	held.Entries = []nodestatus.Entry{{Name: "web", Outcome: "held", Checksum: web.Checksum, Installed: "old", Version: "2.0.0", Reason: "held: rollout halted at wave 1 (node w1 stopped reporting)"}}
	running := doc("w1", 2, now.Add(-time.Hour))
	running.Entries = []nodestatus.Entry{{Name: "web", Outcome: "updated", Checksum: web.Checksum, Installed: web.Checksum, Version: "2.0.1", Health: "pending"}}
	for _, d := range [][]byte{seed(held), seed(running), seed(doc("n", 1, now)), []byte(`{"identity":"x","updated_at":"2026-12-05T12:00:00Z","entries":[{"name":"web","outcome":"rolled_back","checksum":"` + web.Checksum + `"}]}`), []byte("{")} {
		f.Add(d, env)
	}
	f.Fuzz(func(t *testing.T, docBytes, specBytes []byte) {
		tr := fleet.NewTracker(fleet.Options{})
		tr.Apply(kvEntry{bucket: "MACHINES", key: "machines", value: specBytes, revision: 1, op: jetstream.KeyValuePut})
		for i, key := range []string{"a", "b", "c"} {
			tr.Apply(kvEntry{bucket: nodestatus.Bucket, key: key, value: docBytes, revision: uint64(i + 2), op: jetstream.KeyValuePut})
		}
		tr.Apply(kvEntry{bucket: nodestatus.Bucket, key: "b", revision: 5, op: jetstream.KeyValueDelete})
		v := tr.View(now)
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("encode the view: %v", err)
		}
		if len(v.Nodes) != 2 || v.Counts.Nodes != 2 {
			t.Fatalf("two documents left, the view has %d nodes", len(v.Nodes))
		}
		if sp := tr.Spec(); sp.State == fleet.SpecLive {
			w := fleet.NewWait(tr, sp.Opened, now)
			verdict := w.Verdict(now)
			_ = verdict.Progress
		}
	})
}
