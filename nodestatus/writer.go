package nodestatus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
)

// Writer defaults.
const (
	// DefaultHeartbeat is how often the document is rewritten when nothing
	// changes.
	DefaultHeartbeat = 30 * time.Second
	// DefaultMinInterval is the shortest time between two writes: changes
	// that come faster are coalesced into one write.
	DefaultMinInterval = 250 * time.Millisecond
	// DefaultRetryInterval is the wait after a failed or skipped write
	// (NATS down, bucket missing) before the next attempt.
	DefaultRetryInterval = 5 * time.Second
	// DefaultTimeout bounds one write.
	DefaultTimeout = 5 * time.Second
	// DefaultFinalTimeout bounds the last write of an agent shutting down.
	DefaultFinalTimeout = 2 * time.Second
)

// WriterConfig configures a [Writer].
type WriterConfig struct {
	// Identity and Version are the agent's; StartedAt when it started
	// (default: when NewWriter was called).
	Identity  string
	Version   string
	StartedAt time.Time
	// Recorder supplies the spec, results and errors, and signals changes.
	// Required.
	Recorder *Recorder
	// States returns the running machines (agent.Host.States); nil lists
	// none.
	States func() []agent.MachineStatus
	// NATS returns the connection's health (natsbox.Status.Snapshot). When
	// it reports the connection down the Writer does not try to write. Nil
	// means always try.
	NATS func() natsbox.ConnState
	// Trust is the node's spec-signing policy (manager.Settings.Trust),
	// published so operators and `mms put` can tell which keys the node
	// trusts; the zero Trust publishes none (null).
	Trust manager.Trust
	// JetStream reaches the bucket. Required.
	JetStream jetstream.JetStream
	// Bucket is the KV bucket; default [Bucket]. The Writer never creates
	// it: until it exists, writes fail with a logged hint.
	Bucket string
	// Heartbeat, MinInterval, RetryInterval, Timeout and FinalTimeout
	// default to the constants above. MinInterval and RetryInterval are at
	// most Heartbeat.
	Heartbeat, MinInterval, RetryInterval, Timeout, FinalTimeout time.Duration
	// Log receives write failures; nil discards them.
	Log *slog.Logger
}

// Writer keeps one agent's status document current: it writes when the
// Recorder signals a change (at most once per MinInterval, and only if the
// document changed) and on every heartbeat, from one goroutine (Run), so
// writing never blocks the machines. The document is built only after a
// change was signalled; a heartbeat writes the last one built again, with
// the time and the connection's health brought up to date, so an idle
// node costs one small write per heartbeat and nothing in between. When
// Run's ctx ends it writes a last document with stopped_at set.
type Writer struct {
	cfg WriterConfig
	key string
	log *slog.Logger

	// Only Run's goroutine uses these.
	kv          jetstream.KeyValue
	plan        plan
	built       *Document // the last document built, nil before the first
	written     []byte    // the last document written, without updated_at
	lastFailure string    // the last logged write failure, to log each once
}

// NewWriter checks cfg and returns a Writer; call Run to start it.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	var errs []error
	if err := CheckIdentity(cfg.Identity); err != nil {
		errs = append(errs, err)
	}
	if cfg.Recorder == nil {
		errs = append(errs, errors.New("recorder is required"))
	}
	if cfg.JetStream == nil {
		errs = append(errs, errors.New("jetstream is required"))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"heartbeat", &cfg.Heartbeat, DefaultHeartbeat},
		{"min interval", &cfg.MinInterval, DefaultMinInterval},
		{"retry interval", &cfg.RetryInterval, DefaultRetryInterval},
		{"timeout", &cfg.Timeout, DefaultTimeout},
		{"final timeout", &cfg.FinalTimeout, DefaultFinalTimeout},
	} {
		if *d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, *d.v))
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new status writer: %w", err)
	}
	cfg.MinInterval = min(cfg.MinInterval, cfg.Heartbeat)
	cfg.RetryInterval = min(cfg.RetryInterval, cfg.Heartbeat)
	if cfg.Bucket == "" {
		cfg.Bucket = Bucket
	}
	if cfg.StartedAt.IsZero() {
		cfg.StartedAt = time.Now()
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{cfg: cfg, key: Key(cfg.Identity), log: log}, nil
}

// Key returns the document's key in the bucket.
func (w *Writer) Key() string { return w.key }

// Document returns the document as it would be written now.
func (w *Writer) Document() Document {
	rec := w.cfg.Recorder.snapshot()
	var states []agent.MachineStatus
	if w.cfg.States != nil {
		states = w.cfg.States()
	}
	d := Document{
		Version:      DocumentVersion,
		Identity:     w.cfg.Identity,
		AgentVersion: w.cfg.Version,
		StartedAt:    w.cfg.StartedAt.UTC(),
		UpdatedAt:    time.Now().UTC(),
		Heartbeat:    w.cfg.Heartbeat.String(),
		Trust:        trustOf(w.cfg.Trust),
		Applied:      rec.applied,
		Seen:         rec.seen,
		Entries:      entryList(states, rec),
		Machines:     machineList(states, rec),
		LastError:    rec.lastErr,
		LastErrorAt:  rec.errAt,
	}
	if w.cfg.NATS != nil {
		d.NATS = w.cfg.NATS()
	}
	return d
}

// Run writes the document until ctx is done, then writes it a last time
// with stopped_at set (bounded by FinalTimeout) and returns. It returns nil;
// write failures are logged and recorded in the document's last error.
func (w *Writer) Run(ctx context.Context) error {
	// The timer is set only when the wake-up time moves: a change
	// signalled while a write is already planned leaves it alone. It is a
	// new timer each time, not a reset one (see the agent's runner: a
	// reset costs the runtime a walk of every timer of the process when
	// it comes due).
	timer := time.NewTimer(0)
	defer func() { timer.Stop() }()
	var wake time.Time
	for {
		select {
		case <-ctx.Done():
			w.final(ctx)
			return nil
		case <-w.cfg.Recorder.Changed():
			w.plan.dirty = true
		case <-timer.C:
			wake = time.Time{}
			w.tick(ctx, time.Now())
		}
		if next := w.plan.next(w.cfg.Heartbeat, w.cfg.MinInterval, w.cfg.RetryInterval); !next.Equal(wake) {
			wake = next
			timer.Stop()
			timer = time.NewTimer(max(0, time.Until(next)))
		}
	}
}

// tick writes if a heartbeat is due or the document changed.
func (w *Writer) tick(ctx context.Context, now time.Time) {
	heartbeat := w.plan.heartbeatDue(now, w.cfg.Heartbeat)
	if !heartbeat && !w.plan.dirty {
		return
	}
	if now.Before(w.plan.earliest(w.cfg.MinInterval, w.cfg.RetryInterval)) {
		return
	}
	var doc Document
	var content []byte
	if w.plan.dirty || w.built == nil {
		doc = w.Document()
		content = contentOf(doc)
		w.built = &doc
		if !heartbeat && bytes.Equal(content, w.written) {
			w.plan.dirty = false
			return
		}
	} else {
		// A heartbeat and nothing changed: the last document again, its
		// time and the connection's health current.
		doc = *w.built
		doc.UpdatedAt = time.Now().UTC()
		if w.cfg.NATS != nil {
			doc.NATS = w.cfg.NATS()
		}
		content = contentOf(doc)
	}
	w.plan.lastAttempt = now
	w.plan.dirty = false
	if w.cfg.NATS != nil && !doc.NATS.Connected {
		// Publishing now would only wait in the reconnect buffer and time
		// out; the reconnect hook touches the recorder. The decision reads
		// the document's own snapshot: asking the connection again could
		// see it up and write a document that says it is down.
		w.plan.failed, w.plan.dirty = true, true
		return
	}
	wctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	if err := w.put(wctx, doc); err != nil {
		w.plan.failed, w.plan.dirty = true, true
		w.failed(err)
		return
	}
	w.plan.failed = false
	w.plan.lastWrite = now
	w.written = content
}

// final writes the last document, stopped_at set, if NATS is up.
func (w *Writer) final(ctx context.Context) {
	doc := w.Document()
	if w.cfg.NATS != nil && !doc.NATS.Connected {
		w.log.Warn("status not written at shutdown: nats is not connected", "bucket", w.cfg.Bucket, "key", w.key)
		return
	}
	doc.StoppedAt = doc.UpdatedAt
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.FinalTimeout)
	defer cancel()
	if err := w.put(wctx, doc); err != nil {
		w.log.Warn("status not written at shutdown", "bucket", w.cfg.Bucket, "key", w.key, "error", err)
	}
}

// put binds the bucket if needed and writes doc.
func (w *Writer) put(ctx context.Context, doc Document) error {
	if w.kv == nil {
		kv, err := w.cfg.JetStream.KeyValue(ctx, w.cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("write status: bucket %s does not exist; the NATS admin creates it with 'mms init'", w.cfg.Bucket)
		}
		if err != nil {
			return fmt.Errorf("write status: open bucket %s: %w", w.cfg.Bucket, err)
		}
		w.kv = kv
	}
	b, err := fit(doc, MaxWrittenSize)
	if err != nil {
		return fmt.Errorf("write status: encode: %w", err)
	}
	if _, err := w.kv.Put(ctx, w.key, b); err != nil {
		return fmt.Errorf("write status to %s/%s: %w", w.cfg.Bucket, w.key, err)
	}
	return nil
}

// failed logs a write failure once per distinct error and records it.
func (w *Writer) failed(err error) {
	if msg := err.Error(); msg != w.lastFailure {
		w.lastFailure = msg
		w.log.Warn("status write failed; retrying", "error", err, "retry_in", w.cfg.RetryInterval)
	}
	w.cfg.Recorder.RecordError(err)
}

// trustOf is the document's view of t, nil for the zero Trust.
func trustOf(t manager.Trust) *Trust {
	if t.IsZero() {
		return nil
	}
	return &Trust{KeyIDs: t.KeyIDs(), Threshold: t.Threshold(), AllowV1: t.AllowV1(), Unsigned: t.Unsigned()}
}

// contentOf is the document as JSON without its update time, to tell
// whether anything but the time changed since the last write.
func contentOf(d Document) []byte {
	d.UpdatedAt = time.Time{}
	b, _ := json.Marshal(d) // a Document always encodes
	return b
}
