package nodestatus

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/kvwatch"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/rollout"
)

// View follows every agent's status document (a watch on the status
// bucket) and tells a node's manager what the fleet reports about an
// entry: it is the manager.FleetView an agent gives its manager, so a
// rollout gates each wave on what the earlier waves report.
//
// Following the bucket costs every node a copy of every other node's
// status and every change to it: O(N²) for a fleet of N. So a View
// follows only while rollouts need it: Run starts the watch at the first
// Nodes call and stops it (forgetting the documents) once Nodes has not
// been called for [ViewIdle]. A node whose spec has no rollout entry, or
// whose rollouts are done, follows nothing.
type View struct {
	js     jetstream.JetStream
	bucket string
	log    *slog.Logger
	now    func() time.Time
	idle   time.Duration // stop following after this long without a Nodes call
	wake   chan struct{} // a Nodes call wants the bucket followed (buffered, 1)
	change chan struct{} // a node's report changed (buffered, 1): Changes

	mu        sync.Mutex
	docs      map[string]*Document // by key, trimmed to what NodeOf reads
	forged    map[string]bool      // keys whose last document was forged (logged)
	ready     chan struct{}        // closed once the initial documents are in
	once      *sync.Once           // closes ready
	following bool                 // a Nodes call woke Run and it has not gone idle since
	lastUsed  time.Time            // of the last Nodes call
}

// ViewIdle is how long a View keeps following the status bucket after the
// last Nodes call (the last rollout decision of this node).
const ViewIdle = 10 * time.Minute

// NewView returns a view of the documents in bucket (default [Bucket]).
func NewView(js jetstream.JetStream, bucket string, log *slog.Logger) *View {
	if bucket == "" {
		bucket = Bucket
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &View{
		js: js, bucket: bucket, log: log, now: time.Now, idle: ViewIdle, wake: make(chan struct{}, 1), change: make(chan struct{}, 1),
		docs: map[string]*Document{}, forged: map[string]bool{}, ready: make(chan struct{}), once: new(sync.Once),
	}
}

// Run follows the bucket while Nodes is being called, until ctx is done:
// it waits for a Nodes call, watches the bucket (starting the watch again
// after it fails, with a pause) and stops once the view has been idle for
// [ViewIdle].
func (v *View) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-v.wake:
		}
		for {
			err := v.watch(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				break // idle
			}
			if errors.Is(err, errSilent) {
				v.log.Info("the watch of the fleet's status documents went silent; watching again", "bucket", v.bucket)
				continue
			}
			v.log.Warn("following the fleet's status documents failed; trying again", "bucket", v.bucket, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// watch follows the bucket once: every current document, then changes. It
// returns nil when the view went idle.
func (v *View) watch(ctx context.Context) error {
	kv, err := v.js.KeyValue(ctx, v.bucket)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", v.bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", v.bucket, err)
	}
	// Stop can block for seconds when the consumer's server is gone;
	// kvwatch.Stop also frees nats.go's callback if it was left blocked.
	defer func() { go func() { _ = kvwatch.Stop(w) }() }()
	tick := time.NewTicker(min(v.idle/4, time.Minute))
	defer tick.Stop()
	silence := time.NewTicker(SilenceCheck)
	defer silence.Stop()
	lastUpdate := v.now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if v.stopIfIdle() {
				return nil
			}
		case <-silence.C:
			if v.silent(lastUpdate) {
				return errSilent
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			lastUpdate = v.now()
			if e == nil { // every current document is in
				v.mu.Lock()
				v.once.Do(func() { close(v.ready) })
				v.mu.Unlock()
				continue
			}
			v.apply(e)
		}
	}
}

// errSilent means the watch delivered nothing for longer than the agents
// it follows write: the server that held its consumer is gone (the client
// library would notice only after many seconds), so it is started again.
var errSilent = errors.New("the watch went silent")

// SilenceCheck is how often a watch of the status bucket is checked for
// silence (see [SilenceAfter]).
const SilenceCheck = time.Second

// minSilence is the shortest silence [SilenceAfter] takes for a dead watch.
const minSilence = 5 * time.Second

// SilenceAfter is how long a watch of the status bucket may deliver
// nothing before it is taken for dead and started again: two heartbeats of
// the most frequent writer among docs that still run (and at least 5 s),
// since every agent rewrites its document every heartbeat and a live
// watch is never that quiet. It is 0 (never) when none says its heartbeat.
// A watch whose consumer's server died can stay quiet without ending: the
// client library may never notice, or take minutes to.
func SilenceAfter(docs iter.Seq[*Document]) time.Duration {
	var shortest time.Duration
	for d := range docs {
		if !d.StoppedAt.IsZero() {
			continue
		}
		if hb := d.HeartbeatInterval(); hb > 0 && (shortest == 0 || hb < shortest) {
			shortest = hb
		}
	}
	if shortest == 0 {
		return 0
	}
	return max(2*shortest, minSilence)
}

// silent reports whether nothing arrived since last for longer than
// SilenceAfter allows.
func (v *View) silent(last time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	limit := SilenceAfter(maps.Values(v.docs))
	return limit > 0 && v.now().Sub(last) > limit
}

// stopIfIdle forgets the documents and reports true when Nodes has not
// been called for v.idle; the next Nodes call starts following again.
func (v *View) stopIfIdle() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.now().Sub(v.lastUsed) < v.idle {
		return false
	}
	v.following = false
	v.docs, v.forged = map[string]*Document{}, map[string]bool{}
	v.ready, v.once = make(chan struct{}), new(sync.Once)
	return true
}

// Changes receives, coalesced, when a node's report changes in a way a
// rollout decision reads (see manager.FleetNotifier): its version,
// outcome or health of an entry, a failure's reason, or the agent
// starting, stopping or going away. A heartbeat is not a change. One
// consumer (the node's manager) reads it.
func (v *View) Changes() <-chan struct{} { return v.change }

// apply records one bucket change, and tells Changes when it is one. A
// document that speaks for another identity than its key's is left out
// (and logged when a key starts doing so); every time in a document is
// clamped to when the server stored it.
func (v *View) apply(e jetstream.KeyValueEntry) {
	var d *Document
	var forged *ForgedError
	if e.Operation() == jetstream.KeyValuePut {
		full, err := Read(e.Key(), e.Value(), e.Created(), v.now())
		if errors.As(err, &forged) {
			v.noteForged(e.Key(), forged)
		} else if err == nil {
			d = trim(full)
		}
	}
	v.mu.Lock()
	if forged == nil {
		delete(v.forged, e.Key())
	}
	old := v.docs[e.Key()]
	if d == nil {
		delete(v.docs, e.Key())
	} else {
		v.docs[e.Key()] = d
	}
	v.mu.Unlock()
	if !sameForRollouts(old, d) {
		select {
		case v.change <- struct{}{}:
		default:
		}
	}
}

// sameForRollouts reports whether a and b (trimmed, nil when absent) say
// the same to a rollout decision: NodeOf's inputs except the update time
// (a heartbeat), and a held entry's reason (which says what the node
// itself waits for, and would make every held node wake the others).
func sameForRollouts(a, b *Document) bool {
	switch {
	case a == nil || b == nil:
		return a == b
	case a.Identity != b.Identity || a.StoppedAt.IsZero() != b.StoppedAt.IsZero() || a.Heartbeat != b.Heartbeat || len(a.Entries) != len(b.Entries):
		return false
	}
	for i, x := range a.Entries {
		y := b.Entries[i]
		if x.Outcome == string(manager.EntryHeld) && y.Outcome == x.Outcome {
			x.Reason, y.Reason = "", ""
		}
		if !x.HealthyAt.Equal(y.HealthyAt) {
			return false
		}
		x.HealthyAt, y.HealthyAt = time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}

// noteForged logs the first forged document under key (until the key
// holds a genuine one again): a node that rewrites it every second is
// logged once.
func (v *View) noteForged(key string, f *ForgedError) {
	v.mu.Lock()
	seen := v.forged[key]
	v.forged[key] = true
	v.mu.Unlock()
	if !seen {
		v.log.Warn("ignoring a forged status document: a node speaks for another identity than its key's", "bucket", v.bucket, "key", key, "claimed_identity", f.Claimed, "error", f)
	}
}

// trim keeps of d what NodeOf reads, so a view of a large fleet keeps
// small documents.
func trim(d *Document) *Document {
	t := &Document{Identity: d.Identity, UpdatedAt: d.UpdatedAt, StoppedAt: d.StoppedAt, Heartbeat: d.Heartbeat,
		Entries: make([]Entry, len(d.Entries))}
	for i, e := range d.Entries {
		t.Entries[i] = Entry{Name: e.Name, Outcome: e.Outcome, Reason: e.Reason, Checksum: e.Checksum,
			Installed: e.Installed, Health: e.Health, HealthyAt: e.HealthyAt, Hold: e.Hold}
	}
	return t
}

// Nodes returns what each agent the entry machine selects reports about
// it (agents whose last accepted spec skips it are left out), waiting for
// the first documents up to ctx. It implements manager.FleetView. The
// first call (and the first after the view went idle) starts following
// the bucket.
func (v *View) Nodes(ctx context.Context, machine string) ([]rollout.Node, error) {
	v.mu.Lock()
	v.lastUsed = v.now()
	if !v.following {
		v.following = true
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
	ready := v.ready
	v.mu.Unlock()
	select {
	case <-ready:
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
// false when the entry does not select d's agent or its hold holds the
// agent (such a node is in no wave). An agent that stopped or went stale
// counts as stale. A node held by the rollout reports the version it
// keeps; a failed, unhealthy or rolled back one the version it tried.
func NodeOf(d *Document, machine string, now time.Time) (rollout.Node, bool) {
	for _, e := range d.Entries {
		if e.Name != machine {
			continue
		}
		if e.Outcome == string(manager.EntrySkipped) || e.HeldByHold() {
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
