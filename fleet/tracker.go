package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/internal/kvwatch"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
)

// Options say where the fleet's buckets are and how its nodes are judged.
// The zero value is the defaults.
type Options struct {
	// SpecBucket and SpecKey hold the live spec (default MACHINES and
	// machines).
	SpecBucket string
	SpecKey    string
	// StatusBucket holds the status documents (default
	// nodestatus.Bucket).
	StatusBucket string
	// StatusOnly reads and follows the status bucket only: the spec is
	// not needed, or the caller sets it (Tracker.SetSpec).
	StatusOnly bool
	// ReadTimeout bounds how long Follow waits for the current values
	// (0: until ctx ends). The watches live as long as Follow's ctx.
	ReadTimeout time.Duration
	// StaleAfter flags a node stale after this long without an update
	// (default: three of its heartbeats). Rollouts ignore it: they judge
	// staleness as the agents do.
	StaleAfter time.Duration
}

// withDefaults fills in the zero fields.
func (o Options) withDefaults() Options {
	o.SpecBucket = cmp.Or(o.SpecBucket, mmsmanager.DefaultBucket)
	o.SpecKey = cmp.Or(o.SpecKey, mmsmanager.DefaultKey)
	o.StatusBucket = cmp.Or(o.StatusBucket, nodestatus.Bucket)
	return o
}

// Tracker holds what the fleet view is computed from: the live spec and
// every status document, by key. Apply feeds it KV watch entries one at a
// time; the views are computed from it on demand. It also remembers, for
// as long as it lives, the version name every node reported for each
// checksum of a machine, so a rollout names a version after every node
// that ran it moved on, and the versions each rollout moved nodes from
// (see [Rollout].Old). A Tracker is not safe for concurrent use.
type Tracker struct {
	o        Options
	spec     Spec
	docs     map[string]*record
	versions map[string]map[string]string // machine → checksum → version
	olds     map[rolloutKey][]Version     // the old versions of each rollout seen so far
}

// rolloutKey names a rollout: a machine moving to a checksum.
type rolloutKey struct{ machine, checksum string }

// record is one status key: its document, or why it cannot be read.
type record struct {
	key      string
	revision uint64
	doc      *nodestatus.Document
	err      error
}

// name is the record's identity: its document's, else (the document
// cannot be read, or is forged) the identity of its key, or the key when
// it is nobody's.
func (r *record) name() string {
	if r.doc != nil {
		return r.doc.Identity
	}
	if id, err := nodestatus.IdentityOf(r.key); err == nil {
		return id
	}
	return r.key
}

// NewTracker returns an empty tracker: no spec, no document.
func NewTracker(o Options) *Tracker {
	o = o.withDefaults()
	return &Tracker{
		o:        o,
		spec:     Spec{Bucket: o.SpecBucket, Key: o.SpecKey, State: SpecNone},
		docs:     map[string]*record{},
		versions: map[string]map[string]string{},
		olds:     map[rolloutKey][]Version{},
	}
}

// Spec returns the live spec as last applied.
func (t *Tracker) Spec() Spec { return t.spec }

// Apply records one KV watch entry: a put or a delete of a key of the
// status bucket, or an update of the spec key. It reports whether the
// entry was one of those; others (and nil) are ignored.
func (t *Tracker) Apply(e jetstream.KeyValueEntry) bool {
	switch {
	case e == nil:
		return false
	case e.Bucket() == t.o.SpecBucket && e.Key() == t.o.SpecKey:
		t.spec.apply(e)
		return true
	case e.Bucket() != t.o.StatusBucket:
		return false
	case e.Operation() != jetstream.KeyValuePut:
		delete(t.docs, e.Key())
		return true
	}
	// The identity is the key's: a document that claims another is
	// nobody's (kept, without its content, to be flagged forged); no time
	// in a document is later than when the server stored it.
	d, err := nodestatus.Read(e.Key(), e.Value(), e.Created(), time.Now())
	t.docs[e.Key()] = &record{key: e.Key(), revision: e.Revision(), doc: d, err: err}
	if d != nil {
		t.learnVersions(d)
	}
	return true
}

// learnVersions remembers the version names d reports for checksums: the
// version each entry runs, with the checksum installed. (A machine's
// checksum in the document is the one its entry pins, not always the one
// it runs: a held or rolled back machine runs another.)
func (t *Tracker) learnVersions(d *nodestatus.Document) {
	for _, e := range d.Entries {
		switch manager.EntryOutcome(e.Outcome) {
		case manager.EntryInstalled, manager.EntryUpdated, manager.EntryUnchanged, manager.EntryHeld, manager.EntryRolledBack:
			t.learn(e.Name, e.Installed, e.Version)
		}
	}
}

// learn remembers that checksum of machine is called version.
func (t *Tracker) learn(machine, checksum, version string) {
	if checksum == "" || version == "" {
		return
	}
	byChecksum := t.versions[machine]
	if byChecksum == nil {
		byChecksum = map[string]string{}
		t.versions[machine] = byChecksum
	}
	byChecksum[strings.ToLower(checksum)] = version
}

// Version returns the version name nodes reported for checksum of
// machine, "" when none did.
func (t *Tracker) Version(machine, checksum string) string {
	return t.versions[machine][strings.ToLower(checksum)]
}

// records returns the records sorted by identity (by key when a document
// cannot be read), then key.
func (t *Tracker) records() []*record {
	out := make([]*record, 0, len(t.docs))
	for _, r := range t.docs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *record) int { return cmp.Or(cmp.Compare(a.name(), b.name()), cmp.Compare(a.key, b.key)) })
	return out
}

// documents returns the readable documents, sorted as records.
func (t *Tracker) documents() []*nodestatus.Document {
	out := make([]*nodestatus.Document, 0, len(t.docs))
	for _, r := range t.records() {
		if r.doc != nil {
			out = append(out, r.doc)
		}
	}
	return out
}

// View is the whole fleet at one time, for a page or a report.
type View struct {
	// At is the time the view was computed for.
	At time.Time `json:"at"`
	// Spec is the live spec.
	Spec Spec `json:"spec"`
	// Nodes are every status document, sorted by identity.
	Nodes []Node `json:"nodes"`
	// Counts count the nodes by flag.
	Counts Counts `json:"counts"`
	// Rollouts are the rollouts of the live spec, in spec order.
	Rollouts []Rollout `json:"rollouts"`
}

// View computes the whole fleet view at now.
func (t *Tracker) View(now time.Time) View {
	nodes := t.Nodes(now)
	return View{At: now, Spec: t.spec, Nodes: nodes, Counts: CountNodes(nodes), Rollouts: t.Rollouts(now)}
}

// Read reads the live spec and every status document once, with KV
// watches that stop once the current values are in. A missing status
// bucket is an error (wrapping jetstream.ErrBucketNotFound); a missing or
// unreadable spec is not (the tracker's Spec says why).
func Read(ctx context.Context, js jetstream.JetStream, o Options) (*Tracker, error) {
	w, err := Follow(ctx, js, o)
	if err != nil {
		return nil, err
	}
	w.Stop()
	return w.Tracker(), nil
}

// Watcher keeps a Tracker current with KV watches of the spec key and the
// status bucket. Call Next from one goroutine; Stop when done.
type Watcher struct {
	t      *Tracker
	spec   jetstream.KeyWatcher // nil when the spec bucket cannot be read
	status jetstream.KeyWatcher

	specKV, statusKV jetstream.KeyValue // to start a watch that ended again

	now        func() time.Time // the clock
	lastStatus time.Time        // when the status watch last delivered, or started

	// life is what the watches are started with: it ends with Follow's
	// ctx or Stop, but has no deadline, so that starting a watch (a
	// consumer's creation) waits the client library's own request timeout
	// and not, say, all of `put --wait`'s, when the request is lost while
	// a cluster elects a leader.
	life context.Context
	end  func()
}

// Follow starts watching the live spec and the status bucket, applies
// their current values to a new Tracker and returns once they are in. A
// missing status bucket is an error (wrapping jetstream.ErrBucketNotFound).
func Follow(ctx context.Context, js jetstream.JetStream, o Options) (*Watcher, error) {
	t := NewTracker(o)
	o = t.o
	statusKV, err := natsbox.BindKV(ctx, js, o.StatusBucket) // a leader may be being elected
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", o.StatusBucket, err)
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	w := &Watcher{t: t, statusKV: statusKV, now: time.Now, life: life, end: func() { stop(); cancel() }}
	// Each try waits the client's request timeout (life has no deadline);
	// one that timed out is tried again while ctx allows (the caller asked
	// to see the fleet within it).
	if w.status, err = startWatch(ctx, func() (jetstream.KeyWatcher, error) { return statusKV.WatchAll(life) }); err != nil {
		w.end()
		return nil, fmt.Errorf("watch bucket %s: %w", o.StatusBucket, err)
	}
	if !o.StatusOnly {
		if specKV, ok := openSpec(ctx, js, &t.spec); ok {
			if w.spec, err = startWatch(ctx, func() (jetstream.KeyWatcher, error) { return specKV.Watch(life, o.SpecKey) }); err != nil {
				t.spec.State, t.spec.Err = SpecUnreadable, err
				w.spec = nil
			} else {
				w.specKV = specKV
			}
		}
	}
	var timeout <-chan time.Time
	if o.ReadTimeout > 0 {
		timer := time.NewTimer(o.ReadTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	specReady, statusReady := w.spec == nil, false
	for !specReady || !statusReady {
		select {
		case <-ctx.Done():
			w.Stop()
			return nil, fmt.Errorf("read the fleet's status: %w", context.Cause(ctx))
		case <-timeout:
			w.Stop()
			return nil, fmt.Errorf("read the fleet's status: %w", context.DeadlineExceeded)
		case e, ok := <-w.specUpdates():
			if !ok {
				w.Stop()
				return nil, fmt.Errorf("the watch of %s ended", t.spec.Where())
			}
			if e == nil {
				specReady = true
			}
			t.Apply(e)
		case e, ok := <-w.status.Updates():
			if !ok {
				w.Stop()
				return nil, fmt.Errorf("the watch of %s ended", o.StatusBucket)
			}
			if e == nil {
				statusReady = true
			}
			t.Apply(e)
		}
	}
	w.lastStatus = w.now()
	return w, nil
}

// specUpdates is the spec watch's channel, nil (never ready) without one.
func (w *Watcher) specUpdates() <-chan jetstream.KeyValueEntry {
	if w.spec == nil {
		return nil
	}
	return w.spec.Updates()
}

// Tracker returns the tracker the watcher keeps current.
func (w *Watcher) Tracker() *Tracker { return w.t }

// ErrWatchEnded is returned by Next when a watch stopped delivering.
var ErrWatchEnded = errors.New("the watch ended")

// Next waits until a change arrives, applies it and every change already
// waiting behind it, and reports true; or reports false once timeout
// passes without one. It returns ctx's error when ctx ends first. A watch
// that ends (the server holding its consumer died and the client gave up
// on it) is started again, every second until it starts or ctx ends (the
// error then wraps [ErrWatchEnded]); it sends every current value again.
// So is a status watch that went silent without ending: nothing for
// longer than nodestatus.SilenceAfter allows (two heartbeats of the
// agents it follows), which a watch whose consumer died in a cluster can
// do for minutes.
func (w *Watcher) Next(ctx context.Context, timeout time.Duration) (bool, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	// Silence is checked now (a caller may call with timeouts shorter
	// than the ticker's period) and every SilenceCheck while Next waits.
	if err := w.restartIfSilent(ctx); err != nil {
		return false, err
	}
	silence := time.NewTicker(nodestatus.SilenceCheck)
	defer silence.Stop()
	changed := false
	for {
		var e jetstream.KeyValueEntry
		var ok, fromSpec bool
		if !changed {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-timer.C:
				return false, nil
			case <-silence.C:
				if err := w.restartIfSilent(ctx); err != nil {
					return false, err
				}
				continue
			case e, ok = <-w.specUpdates():
				fromSpec = true
			case e, ok = <-w.status.Updates():
			}
		} else {
			select {
			case e, ok = <-w.specUpdates():
				fromSpec = true
			case e, ok = <-w.status.Updates():
			default:
				return true, nil
			}
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return changed, err // the watches end with ctx
			}
			if err := w.rewatch(ctx, fromSpec); err != nil {
				return changed, err
			}
			continue
		}
		if !fromSpec {
			w.lastStatus = w.now()
		}
		if w.t.Apply(e) {
			changed = true
		}
	}
}

// restartIfSilent starts the status watch again when it went silent.
func (w *Watcher) restartIfSilent(ctx context.Context) error {
	if !w.statusSilent() {
		return nil
	}
	old := w.status
	go func() { _ = kvwatch.Stop(old) }() // Stop can block for seconds when the consumer's server is gone
	return w.rewatch(ctx, false)
}

// statusSilent reports whether the status watch delivered nothing for
// longer than nodestatus.SilenceAfter allows for the documents tracked.
func (w *Watcher) statusSilent() bool {
	limit := nodestatus.SilenceAfter(func(yield func(*nodestatus.Document) bool) {
		for _, r := range w.t.docs {
			if r.doc != nil && !yield(r.doc) {
				return
			}
		}
	})
	return limit > 0 && w.now().Sub(w.lastStatus) > limit
}

// startWatch starts a watch with start, trying again every rewatchEvery
// after a try that timed out or found no responder (a server was killed,
// a leader is being elected) until ctx ends; another error ends it.
func startWatch(ctx context.Context, start func() (jetstream.KeyWatcher, error)) (jetstream.KeyWatcher, error) {
	for {
		kw, err := start()
		if err == nil {
			return kw, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
			return nil, err
		}
		if !backoff.Sleep(ctx, rewatchEvery) {
			return nil, err
		}
	}
}

// rewatchEvery is how often a watch that ended is tried again.
const rewatchEvery = time.Second

// rewatch starts the spec's or the status bucket's watch again, trying
// every rewatchEvery (a stream leader may be being elected) until it
// starts or ctx ends.
func (w *Watcher) rewatch(ctx context.Context, spec bool) error {
	for {
		var kw jetstream.KeyWatcher
		var err error
		if spec {
			kw, err = w.specKV.Watch(w.life, w.t.o.SpecKey)
		} else {
			kw, err = w.statusKV.WatchAll(w.life)
		}
		if err == nil {
			if spec {
				w.spec = kw
			} else {
				w.status, w.lastStatus = kw, w.now()
			}
			return nil
		}
		if !backoff.Sleep(ctx, rewatchEvery) {
			return fmt.Errorf("%w and could not start again: %w", ErrWatchEnded, err)
		}
	}
}

// Stop stops the watches.
func (w *Watcher) Stop() {
	// kvwatch.Stop also reads what the watches still deliver: a status
	// watch stopped while behind would otherwise keep nats.go's callback
	// blocked for good. It ignores a watch never started (nil).
	_ = kvwatch.Stop(w.spec)
	_ = kvwatch.Stop(w.status)
	if w.end != nil {
		w.end()
	}
}
