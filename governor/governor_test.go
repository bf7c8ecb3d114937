package governor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/internal/natstest"
)

// testGovernors returns Governors on a fresh JetStream server that retry
// quickly, and the connection.
func testGovernors(t *testing.T) (*Governors, jetstream.JetStream) {
	t.Helper()
	nc := natstest.Connect(t, natstest.RunJetStream(t))
	g, err := New(nc, "test@node1", nil)
	if err != nil {
		t.Fatal(err)
	}
	g.retry = backoff.Policy{First: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return g, js
}

func TestGovernorLimitsConcurrentHolders(t *testing.T) {
	g, js := testGovernors(t)
	ctx := t.Context()
	if _, err := Add(ctx, js, "downloads", 2, time.Minute, 1); err != nil {
		t.Fatal(err)
	}

	const takers = 5
	var holding, maxHolding, done atomic.Int32
	proceed := make(chan struct{})
	errs := make(chan error, takers)
	var wg sync.WaitGroup
	for i := range takers {
		wg.Go(func() {
			release, err := g.Acquire(ctx, "downloads")
			if err != nil {
				errs <- fmt.Errorf("taker %d: %w", i, err)
				return
			}
			n := holding.Add(1)
			for {
				m := maxHolding.Load()
				if n <= m || maxHolding.CompareAndSwap(m, n) {
					break
				}
			}
			select {
			case <-proceed:
			case <-ctx.Done():
			}
			holding.Add(-1)
			release()
			done.Add(1)
		})
	}
	// Let the holders go one at a time; each time, two must hold again
	// (while enough takers are left) and never more.
	for released := 0; released < takers; released++ {
		want := int32(min(2, takers-released))
		natstest.Eventually(t, 10*time.Second, func() error {
			if h := holding.Load(); h != want {
				return fmt.Errorf("holding = %d, want %d", h, want)
			}
			return nil
		})
		proceed <- struct{}{}
		natstest.Eventually(t, 10*time.Second, func() error {
			if d := done.Load(); d != int32(released+1) {
				return fmt.Errorf("done = %d, want %d", d, released+1)
			}
			return nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m := maxHolding.Load(); m != 2 {
		t.Errorf("at most %d held a slot at once, want 2", m)
	}
	info, err := Get(ctx, js, "downloads")
	if err != nil {
		t.Fatal(err)
	}
	if info.InUse != 0 {
		t.Errorf("Get(downloads).InUse = %d after every release, want 0", info.InUse)
	}
}

func TestGovernorExpiryFreesCrashedHolder(t *testing.T) {
	g, js := testGovernors(t)
	ctx := t.Context()
	if _, err := Add(ctx, js, "slow", 1, 500*time.Millisecond, 1); err != nil {
		t.Fatal(err)
	}
	// A holder that never releases (it crashed).
	if _, err := g.Acquire(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	release, err := g.Acquire(actx, "slow")
	if err != nil {
		t.Fatalf("Acquire(slow) after the crashed holder's expiry = %v, want a slot", err)
	}
	release()
	release() // a second call does nothing
}

func TestGovernorTimeout(t *testing.T) {
	g, js := testGovernors(t)
	ctx := t.Context()
	if _, err := Add(ctx, js, "one", 1, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	release, err := g.Acquire(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = g.Acquire(actx, "one")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `governor "one": no slot free`) {
		t.Fatalf("Acquire(one) while full = %v, want a deadline error saying no slot is free", err)
	}
}

func TestGovernorMissing(t *testing.T) {
	g, js := testGovernors(t)
	ctx := t.Context()
	_, err := g.Acquire(ctx, "nope")
	want := `governor "nope" does not exist: create it with mms governor add nope LIMIT`
	if !errors.Is(err, ErrNotFound) || err.Error() != want {
		t.Fatalf("Acquire(nope) = %v, want %q", err, want)
	}
	if err := Remove(ctx, js, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove(nope) = %v, want ErrNotFound", err)
	}
	if _, err := Get(ctx, js, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
}

// TestNewGate: a node with NATS waits on the governor itself; one without
// refuses every governed action, naming the governor, rather than ignore
// the fleet-wide limit.
func TestNewGate(t *testing.T) {
	nc := natstest.Connect(t, natstest.RunJetStream(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Add(t.Context(), js, "one", 1, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	gate, err := NewGate(nc, "test@node1", nil)
	if err != nil {
		t.Fatalf("NewGate(conn) = %v", err)
	}
	release, err := gate(t.Context(), "one")
	if err != nil {
		t.Fatalf("gate(one) = %v, want a slot", err)
	}
	info, err := Get(t.Context(), js, "one")
	if err != nil || info.InUse != 1 {
		t.Errorf("governor one while the gate holds it = %+v, %v; want 1 in use", info, err)
	}
	release()

	gate, err = NewGate(nil, "test@node1", nil)
	if err != nil {
		t.Fatalf("NewGate(nil) = %v", err)
	}
	release, err = gate(t.Context(), "one")
	want := `governor "one": the agent has no NATS connection to reach it`
	if err == nil || err.Error() != want || release != nil {
		t.Errorf("gate(one) without NATS = %v, %v; want %q", release != nil, err, want)
	}
}

func TestGovernorAdmin(t *testing.T) {
	g, js := testGovernors(t)
	ctx := t.Context()
	tests := []struct {
		name    string
		gov     string
		limit   int64
		expire  time.Duration
		wantErr string
	}{
		{name: "valid", gov: "web", limit: 3, expire: 5 * time.Minute},
		{name: "bad name", gov: "a.b", limit: 1, expire: time.Minute, wantErr: "governor name"},
		{name: "zero limit", gov: "x", limit: 0, expire: time.Minute, wantErr: "limit 0 must be at least 1"},
		{name: "no expiry", gov: "x", limit: 1, expire: 0, wantErr: "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Add(ctx, js, tt.gov, tt.limit, tt.expire, 1)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Add(%q, %d, %v) = %v, want error containing %q", tt.gov, tt.limit, tt.expire, err, tt.wantErr)
			}
		})
	}
	if _, err := Add(ctx, js, "db", 1, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	list, err := List(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{Name: "db", Limit: 1, InUse: 1, Expire: time.Minute, Replicas: 1},
		{Name: "web", Limit: 3, InUse: 0, Expire: 5 * time.Minute, Replicas: 1},
	}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("List() = %v, want %v", list, want)
	}
	// Raising the limit keeps the holder.
	if info, err := Add(ctx, js, "db", 2, time.Minute, 1); err != nil || info.Limit != 2 || info.InUse != 1 {
		t.Fatalf("Add(db, 2) = %+v, %v, want limit 2 with 1 in use", info, err)
	}
	if err := Reset(ctx, js, "db"); err != nil {
		t.Fatal(err)
	}
	if info, err := Get(ctx, js, "db"); err != nil || info.InUse != 0 {
		t.Fatalf("Get(db) after reset = %+v, %v, want 0 in use", info, err)
	}
	if err := Remove(ctx, js, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(ctx, "db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Acquire(db) after remove = %v, want ErrNotFound", err)
	}
}
