package fleetstatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/rollout"
)

// View follows every agent's status document (a watch on the status
// bucket) and tells a node's manager what the fleet reports about an
// entry: it is the manager.FleetView an agent gives its manager, so a
// rollout gates each wave on what the earlier waves report. Run keeps it
// current; Nodes answers from memory.
type View struct {
	js     jetstream.JetStream
	bucket string
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	docs  map[string]*Document // by key
	ready chan struct{}        // closed once the initial documents are in
	once  sync.Once
}

// NewView returns a view of the documents in bucket (default [Bucket]).
func NewView(js jetstream.JetStream, bucket string, log *slog.Logger) *View {
	if bucket == "" {
		bucket = Bucket
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &View{js: js, bucket: bucket, log: log, now: time.Now, docs: map[string]*Document{}, ready: make(chan struct{})}
}

// Run follows the bucket until ctx is done, starting the watch again
// after it fails (the bucket missing, NATS away) with a pause.
func (v *View) Run(ctx context.Context) error {
	for {
		err := v.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		v.log.Warn("following the fleet's status documents failed; trying again", "bucket", v.bucket, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// watch follows the bucket once: every current document, then changes.
func (v *View) watch(ctx context.Context) error {
	kv, err := v.js.KeyValue(ctx, v.bucket)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", v.bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", v.bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if e == nil { // every current document is in
				v.once.Do(func() { close(v.ready) })
				continue
			}
			v.apply(e)
		}
	}
}

// apply records one bucket change.
func (v *View) apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(v.docs, e.Key())
		return
	}
	d, err := ParseDocument(e.Value())
	if err != nil {
		delete(v.docs, e.Key())
		return
	}
	v.docs[e.Key()] = d
}

// Nodes returns what each agent the entry machine selects reports about
// it (agents whose last accepted spec skips it are left out), waiting for
// the first documents up to ctx. It implements manager.FleetView.
func (v *View) Nodes(ctx context.Context, machine string) ([]rollout.Node, error) {
	select {
	case <-v.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("the fleet's status documents are not read yet: %w", context.Cause(ctx))
	}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []rollout.Node
	for _, d := range v.docs {
		if n, ok := NodeOf(d, machine, now); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// NodeOf is what document d says about entry machine for a rollout, and
// false when the entry does not select d's agent. An agent that stopped
// or went stale counts as stale. A held node reports the version it keeps;
// a failed, unhealthy or rolled back one the version it tried.
func NodeOf(d *Document, machine string, now time.Time) (rollout.Node, bool) {
	for _, e := range d.Entries {
		if e.Name != machine {
			continue
		}
		if e.Outcome == string(manager.EntrySkipped) {
			return rollout.Node{}, false
		}
		n := rollout.Node{Identity: d.Identity, Checksum: e.Checksum, Health: rollout.Health(e.Health), HealthyAt: e.HealthyAt, Reason: e.Reason,
			Stale: !d.StoppedAt.IsZero() || d.Stale(now, 0)}
		switch manager.EntryOutcome(e.Outcome) {
		case manager.EntryHeld:
			n.Checksum, n.Health = e.Installed, rollout.Healthy
		case manager.EntryFailed:
			n.Health = rollout.Failed
		case manager.EntryRolledBack:
			n.Health = rollout.RolledBack
		case manager.EntryUnhealthy:
			n.Health = rollout.Unhealthy
		}
		return n, true
	}
	return rollout.Node{}, false
}

var _ manager.FleetView = (*View)(nil)
