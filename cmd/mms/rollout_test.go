package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// TestRolloutOf builds a rollout's view from status documents the way
// every agent ranks the nodes, and prints it.
func TestRolloutOf(t *testing.T) {
	now := time.Now()
	m := spec.Machine{Name: "web", Checksum: "newsum", Rollout: &spec.Rollout{Waves: []string{"1", "100%"}, Pause: spec.Duration(time.Second)}}
	ids := []string{"a", "b", "c"}
	waves := rollout.Assign(ids, "web", "newsum", []spec.Wave{{Count: 1}, {Percent: 100}})
	first := waves[0][0]
	var docs []*nodestatus.Document
	for _, id := range ids {
		d := &nodestatus.Document{Identity: id, UpdatedAt: now, Heartbeat: "30s"}
		e := nodestatus.Entry{Name: "web", Checksum: "newsum", Version: "1.0.0", Installed: "oldsum", Outcome: "held", Reason: "held: waiting for wave 1 (node " + first + " is pending)"}
		if id == first {
			e = nodestatus.Entry{Name: "web", Checksum: "newsum", Version: "2.0.0", Installed: "newsum", Outcome: "updated", Health: "pending"}
		}
		d.Entries = []nodestatus.Entry{e}
		docs = append(docs, d)
	}
	docs = append(docs, &nodestatus.Document{Identity: "db1", UpdatedAt: now, Entries: []nodestatus.Entry{{Name: "web", Outcome: "skipped"}}})
	v := rolloutOf(m, docs, now)
	if v.Current != 1 || v.Halted || v.Done || v.NewVersion != "2.0.0" || len(v.Waves) != 2 || len(v.Waves[0].Nodes) != 1 || len(v.Waves[1].Nodes) != 2 {
		t.Fatalf("rolloutOf() = %+v, want wave 1 under way with 1 + 2 nodes (db1 not selected)", v)
	}
	if n := v.Waves[0].Nodes[0]; n.Identity != first || n.State != "pending" {
		t.Errorf("wave 1 = %+v, want %s pending", n, first)
	}
	var out bytes.Buffer
	printRollout(&out, v)
	for _, want := range []string{"web: 1.0.0 → 2.0.0 (newsum", "under way: wave 1", "held", "waiting for wave 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed rollout lacks %q:\n%s", want, out.String())
		}
	}

	// A rollback in wave 1 halts it.
	docs[slices.Index(ids, first)].Entries[0] = nodestatus.Entry{Name: "web", Checksum: "newsum", Installed: "oldsum", Version: "1.0.0", Outcome: "rolled_back", Health: "rolled_back", Reason: "not ready within 3s"}
	v = rolloutOf(m, docs, now)
	if !v.Halted || v.HaltedAt != 1 || !strings.Contains(v.Reason, first+": not ready within 3s") {
		t.Errorf("after a rollback rolloutOf() = %+v, want halted at wave 1 with the reason", v)
	}
}
