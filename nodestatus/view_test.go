package nodestatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// TestViewFollowsOnlyWhileUsed checks that a view watches the status
// bucket (a consumer on its stream) only from the first Nodes call until
// it has been idle for its idle time, and follows again at the next call:
// a node without rollouts must not receive the whole fleet's status.
func TestViewFollowsOnlyWhileUsed(t *testing.T) {
	js, kv := statusKV(t)
	doc, _ := json.Marshal(Document{Identity: "web1", UpdatedAt: time.Now(), Heartbeat: "30s",
		Entries: []Entry{{Name: "web", Outcome: "updated", Checksum: "new", Installed: "new", Health: "healthy"}}})
	if _, err := kv.Put(t.Context(), Key("web1"), doc); err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		t.Helper()
		s, err := js.Stream(t.Context(), "KV_"+Bucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}

	var clock struct {
		sync.Mutex
		now time.Time
	}
	clock.now = time.Now()
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.now }
	advance := func(d time.Duration) { clock.Lock(); clock.now = clock.now.Add(d); clock.Unlock() }

	v := NewView(js, "", nil)
	v.now, v.idle = now, 200*time.Millisecond // ticks every 50ms
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = v.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	if n := consumers(); n != 0 {
		t.Errorf("%d consumers before any Nodes call, want 0", n)
	}
	for range 2 {
		nodes, err := v.Nodes(t.Context(), "web")
		if err != nil || len(nodes) != 1 || nodes[0].Identity != "web1" {
			t.Fatalf("Nodes() = %v, %v; want web1", nodes, err)
		}
		if n := consumers(); n != 1 {
			t.Errorf("%d consumers while the view is used, want 1", n)
		}
		advance(time.Second) // past the idle time: the view stops following
		natstest.Eventually(t, 10*time.Second, func() error {
			if n := consumers(); n != 0 {
				return fmt.Errorf("%d consumers once idle, want 0", n)
			}
			return nil
		})
		v.mu.Lock()
		kept := len(v.docs)
		v.mu.Unlock()
		if kept != 0 {
			t.Errorf("idle view keeps %d documents, want none", kept)
		}
	}
}

// TestViewIgnoresForgedDocuments: a node may write only its own key, so a
// document under web1's key that claims another identity (a node that
// does not exist, failing the rollout in wave 1) is not part of the fleet
// a rollout sees; a document that claims a time in the future ages from
// when the server stored it.
func TestViewIgnoresForgedDocuments(t *testing.T) {
	js, kv := statusKV(t)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	put := func(key string, d Document) {
		t.Helper()
		d.Heartbeat = "30s"
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), key, b); err != nil {
			t.Fatal(err)
		}
	}
	put(Key("web1"), Document{Identity: "fake29", UpdatedAt: future,
		Entries: []Entry{{Name: "web", Outcome: "failed", Checksum: "new", Installed: "old", Reason: "boom"}}})
	put(Key("web2"), Document{Identity: "web2", UpdatedAt: future,
		Entries: []Entry{{Name: "web", Outcome: "updated", Checksum: "new", Installed: "new", Health: "healthy", HealthyAt: future}}})

	var clock struct {
		sync.Mutex
		now time.Time
	}
	clock.now = time.Now()
	v := NewView(js, "", nil)
	v.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.now }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = v.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	nodes, err := v.Nodes(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Identity != "web2" || nodes[0].Stale || nodes[0].HealthyAt.After(time.Now()) {
		t.Fatalf("Nodes() = %+v, want web2 alone, fresh, healthy since it was written", nodes)
	}
	clock.Lock()
	clock.now = clock.now.Add(time.Hour)
	clock.Unlock()
	nodes, err = v.Nodes(t.Context(), "web")
	if err != nil || len(nodes) != 1 || !nodes[0].Stale {
		t.Fatalf("Nodes() an hour later = %+v, %v; want web2 stale (it claimed to be written in 2099)", nodes, err)
	}
}

// TestViewChanges: a change of what a node reports about an entry reaches
// Changes; which changes count is sameForRollouts' table.
func TestViewChanges(t *testing.T) {
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	base := Document{Identity: "web1", UpdatedAt: at, Heartbeat: "30s", Entries: []Entry{
		{Name: "web", Outcome: "held", Checksum: "new", Installed: "old", Reason: "held: waiting for wave 1 (node web2 is pending)"},
		{Name: "db", Outcome: "updated", Checksum: "new", Installed: "new", Health: "healthy", HealthyAt: at},
	}}
	with := func(edit func(d *Document)) *Document {
		d := base
		d.Entries = slices.Clone(base.Entries)
		edit(&d)
		return trim(&d)
	}
	for _, tt := range []struct {
		name string
		doc  *Document
		same bool
	}{
		{"a heartbeat", with(func(d *Document) { d.UpdatedAt = at.Add(time.Minute) }), true},
		{"a held entry waits for another node", with(func(d *Document) { d.Entries[0].Reason = "held: waiting for wave 1 (node web3 is pending)" }), true},
		{"the same healthy time in another zone", with(func(d *Document) { d.Entries[1].HealthyAt = at.In(time.FixedZone("x", 3600)) }), true},
		{"a held entry goes", with(func(d *Document) { d.Entries[0].Outcome, d.Entries[0].Installed = "updated", "new" }), false},
		{"a version gets healthy", with(func(d *Document) { d.Entries[1].HealthyAt = at.Add(time.Second) }), false},
		{"a failure's reason", with(func(d *Document) { d.Entries[1].Outcome, d.Entries[1].Reason = "rolled_back", "entered BROKEN" }), false},
		{"the agent stops", with(func(d *Document) { d.StoppedAt = at }), false},
		{"the document goes", nil, false},
	} {
		if got := sameForRollouts(trim(&base), tt.doc); got != tt.same {
			t.Errorf("%s: sameForRollouts() = %v, want %v", tt.name, got, tt.same)
		}
	}

	js, kv := statusKV(t)
	v := NewView(js, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = v.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	if _, err := v.Nodes(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	select { // an empty bucket: nothing changed
	case <-v.Changes():
		t.Fatal("Changes() fired for an empty bucket")
	default:
	}
	b, _ := json.Marshal(base)
	if _, err := kv.Put(t.Context(), Key("web1"), b); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Changes():
	case <-time.After(10 * time.Second):
		t.Fatal("a new document did not reach Changes()")
	}
}

// TestHeldByHold: an entry its hold holds is in no rollout (NodeOf leaves
// the node out), waits for nothing, is no failure, and reads "held
// (hold)"; an entry a rollout holds waits and reads "held".
func TestHeldByHold(t *testing.T) {
	now := time.Now()
	hold := Entry{Name: "web", Outcome: "held", Checksum: "new", Installed: "old", Hold: "identity('^web3')", Reason: "held (hold): hold \"identity('^web3')\" selects this node; it keeps what it runs"}
	waiting := Entry{Name: "web", Outcome: "held", Checksum: "new", Installed: "old", Reason: "held: waiting for wave 1 (node web1 is pending)"}
	for _, tt := range []struct {
		e               Entry
		inRollout       bool
		waiting, state  string
		failed, holding bool
	}{
		{e: hold, state: "held (hold)", holding: true},
		{e: waiting, inRollout: true, waiting: "web held: waiting for wave 1 (node web1 is pending)", state: "held"},
	} {
		d := &Document{Identity: "web3", UpdatedAt: now, Heartbeat: "30s", Entries: []Entry{tt.e}}
		if _, ok := NodeOf(d, "web", now); ok != tt.inRollout {
			t.Errorf("%q: NodeOf() in the rollout = %v, want %v", tt.e.Reason, ok, tt.inRollout)
		}
		if got := tt.e.Waiting(); got != tt.waiting {
			t.Errorf("%q: Waiting() = %q, want %q", tt.e.Reason, got, tt.waiting)
		}
		if got := tt.e.State(); got != tt.state || tt.e.HeldByHold() != tt.holding || len(d.Failed()) > 0 {
			t.Errorf("%q: State() = %q, HeldByHold() = %v, failed %v; want %q, %v, none", tt.e.Reason, got, tt.e.HeldByHold(), d.Failed(), tt.state, tt.holding)
		}
	}
}
