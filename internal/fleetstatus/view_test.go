package fleetstatus

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
)

// TestViewNodes follows real status documents in a real bucket and reads
// what they say about an entry, the way a rollout does.
func TestViewNodes(t *testing.T) {
	js, kv := statusKV(t)
	now := time.Now()
	put := func(d Document) {
		t.Helper()
		d.UpdatedAt, d.Heartbeat = now, "30s"
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), Key(d.Identity), b); err != nil {
			t.Fatal(err)
		}
	}
	healthyAt := now.Add(-time.Minute).UTC().Round(time.Millisecond)
	put(Document{Identity: "web1", Entries: []Entry{{Name: "web", Outcome: "updated", Checksum: "new", Installed: "new", Health: "healthy", HealthyAt: healthyAt}}})
	put(Document{Identity: "web2", Entries: []Entry{{Name: "web", Outcome: "held", Checksum: "new", Installed: "old", Reason: "held: waiting for wave 1"}}})
	put(Document{Identity: "web3", Entries: []Entry{{Name: "web", Outcome: "rolled_back", Checksum: "new", Installed: "old", Health: "rolled_back", Reason: "version new unhealthy"}}})
	put(Document{Identity: "db1", Entries: []Entry{{Name: "web", Outcome: "skipped"}}})
	stale := Document{Identity: "web4", Entries: []Entry{{Name: "web", Outcome: "unchanged", Checksum: "old", Installed: "old", Health: "healthy"}}}
	b, _ := json.Marshal(func() Document { d := stale; d.UpdatedAt, d.Heartbeat = now.Add(-time.Hour), "30s"; return d }())
	if _, err := kv.Put(t.Context(), Key("web4"), b); err != nil {
		t.Fatal(err)
	}

	v := NewView(js, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = v.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	var nodes []rollout.Node
	natstest.Eventually(t, 10*time.Second, func() error {
		var err error
		nodes, err = v.Nodes(t.Context(), "web")
		if err == nil && len(nodes) != 4 {
			return errNotYet
		}
		return err
	})
	slices.SortFunc(nodes, func(a, b rollout.Node) int { return strings.Compare(a.Identity, b.Identity) })
	want := []rollout.Node{
		{Identity: "web1", Checksum: "new", Health: rollout.Healthy, HealthyAt: healthyAt},
		{Identity: "web2", Checksum: "old", Health: rollout.Healthy, Reason: "held: waiting for wave 1"},
		{Identity: "web3", Checksum: "new", Health: rollout.RolledBack, Reason: "version new unhealthy"},
		{Identity: "web4", Checksum: "old", Health: rollout.Healthy, Stale: true},
	}
	for i := range want {
		if !nodes[i].HealthyAt.Equal(want[i].HealthyAt) {
			t.Errorf("node %s healthy at %v, want %v", nodes[i].Identity, nodes[i].HealthyAt, want[i].HealthyAt)
		}
		nodes[i].HealthyAt, want[i].HealthyAt = time.Time{}, time.Time{}
		if nodes[i] != want[i] {
			t.Errorf("node %d = %+v, want %+v", i, nodes[i], want[i])
		}
	}

	// A change reaches the view.
	put(Document{Identity: "web2", Entries: []Entry{{Name: "web", Outcome: "updated", Checksum: "new", Installed: "new", Health: "pending"}}})
	natstest.Eventually(t, 10*time.Second, func() error {
		nodes, _ := v.Nodes(t.Context(), "web")
		for _, n := range nodes {
			if n.Identity == "web2" && n.Checksum == "new" && n.Health == rollout.Pending {
				return nil
			}
		}
		return errNotYet
	})
}

var errNotYet = errors.New("not yet")
