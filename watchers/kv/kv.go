// Package kvwatcher is the "kv" watcher: it follows one key of a NATS
// JetStream Key-Value bucket and keeps its value in the machine's data, so
// other watchers (the machines watcher, exec commands through WATCHER_DATA)
// act on it. A new value fires the success_transition.
//
// # Properties
//
// These Choria properties are accepted, with Choria's meaning:
//
//	bucket              the bucket (required)
//	key                 the key (required)
//	mode                "watch" (the default) or "poll"
//	bucket_prefix       true (the default) stores the value under BUCKET_key,
//	                    false under key
//	store_key           stores the value under this data key instead
//	on_successful_get   every check that finds the key present is a Success,
//	                    even when the value did not change
//	on_matching_update  a put of the same value with a higher revision is a
//	                    Success, except for the first read after start
//
// bucket, key and store_key may be templates, rendered once when the
// machine loads with the node's identity, facts and the machine data (see
// package github.com/mms-io/mms/watchers/render for the fields and
// functions): `key: nodes.{{ .Identity }}`. Choria templates key and
// store_key (not bucket) and renders them on every poll.
//
// and one of mms's own:
//
//	resync_interval     watch mode only: how often the key is also read
//	                    directly to catch a silent watch (default 30s, at
//	                    least 1s)
//
// Choria's republish_trigger, hiera_config and query are not supported: a
// machine that sets them fails to load, with what to use instead. Choria's
// default mode is poll and it rejects watch; mms's default is watch.
//
// # Values
//
// A value is parsed like Choria does: with surrounding white space ignored, a
// value starting with { is decoded as a JSON object and one starting with [
// as a JSON array; anything else is stored as the raw string, untrimmed.
// Unlike Choria, a value that starts like JSON but does not decode is stored
// as the raw string (never as an empty object) and the state event carries
// the parse error.
//
// # Checks and events
//
// A check compares the key's current value with what the machine's data
// holds under the data key. A different value is stored and is a Success
// (state "changed"). The same value is Unchanged: a restart that finds the
// value it persisted before fires nothing, unless on_successful_get asks for
// it (that is how a manager machine leaves its initial state at start).
//
// A deleted or purged key (state "deleted"), a key that was never there or
// a missing bucket (state "missing") never touch the stored data: the last
// good value stays, so an outage or a bucket rebuild does not wipe a node's
// desired state. Each is reported once, when it starts (Outcome Report: an
// event, no transition). When the key comes back, the usual comparison
// applies.
//
// Every event carries Choria's state, bucket, key and mode, and mms's
// data_key, plus revision, operation, reason and parse_error when they apply.
// A failure to read or watch the key is a check error (the fail_transition
// fires), returned by one check per distinct failure in watch mode and by
// every failing check in poll mode.
//
// # Watch mode
//
// [Watcher.Stream] holds a KV watch on the key and asks the Runner for a
// check on every entry; the check itself does no I/O. A watch does not
// recover quickly by itself when the server restarts, and goes silent when
// the cluster node holding its consumer dies, so the stream also re-creates
// the watch (resuming after the last revision seen) and reads the key after
// every reconnect (Deps.OnReconnect), and reads the key every
// resync_interval, re-creating the watch when that read finds something the
// watch did not deliver. A bucket that does not exist yet, or a watch the
// server did not make, is retried with a backoff drawn at random, so a
// fleet that lost its watches together does not retry together. A watch
// is stopped by cancelling its context, so the consumer is removed in the
// background and nothing waits for the server; what it still delivers is
// read and dropped (package kvwatch), so nats.go's callback never stays
// blocked on it.
//
// # Poll mode
//
// Each check reads the key (the interval defaults to one minute), and the
// stream only asks for a check after a reconnect. In watch mode the interval
// only matters with on_successful_get.
package kvwatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mms-io/mms/internal/kvname"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Modes.
const (
	// ModeWatch follows the key with a KV watch (the default).
	ModeWatch = "watch"
	// ModePoll reads the key on every check.
	ModePoll = "poll"
)

// Values of State.State.
const (
	// StateChanged: a new value was stored.
	StateChanged = "changed"
	// StateUnchanged: the key holds the value already stored.
	StateUnchanged = "unchanged"
	// StateDeleted: the key was deleted or purged; the data is kept.
	StateDeleted = "deleted"
	// StateMissing: the key or the bucket does not exist; the data is kept.
	StateMissing = "missing"
	// StateError: the key could not be read or watched.
	StateError = "error"
)

// Timing.
const (
	// DefaultInterval is the check interval when machine.yaml gives none.
	DefaultInterval = time.Minute
	// DefaultResyncInterval is how often watch mode reads the key directly.
	DefaultResyncInterval = 30 * time.Second
	// MinResyncInterval is the smallest resync_interval accepted.
	MinResyncInterval = time.Second
	// opTimeout bounds each bind, read and watch creation the stream makes.
	opTimeout = 5 * time.Second
	// retryFirst and retryMax bound the stream's backoff while it cannot
	// watch (no bucket yet, no server); retryMax is lowered to the resync
	// interval when that is shorter.
	retryFirst = 250 * time.Millisecond
	retryMax   = 30 * time.Second
)

func init() {
	watchers.Register(watchers.Info{
		Type:            "kv",
		Version:         "v1",
		New:             func() watchers.Watcher { return new(Watcher) },
		DefaultInterval: watchers.Duration(DefaultInterval),
		MinInterval:     watchers.Duration(time.Second),
		Timeout:         watchers.Duration(3 * opTimeout),
	})
}

// Watcher is the kv watcher's configuration (its machine.yaml properties)
// and runtime state.
type Watcher struct {
	// Bucket is the KV bucket; it may be a template. Required.
	Bucket string `json:"bucket"`
	// Key is the key in Bucket; it may be a template. Required.
	Key string `json:"key"`
	// Mode is "watch" (follow the key with a KV watch) or "poll" (read it
	// on every check).
	Mode string `json:"mode,omitempty" default:"watch"`
	// BucketPrefix stores the value under the data key BUCKET_key; false
	// stores it under key.
	BucketPrefix *bool `json:"bucket_prefix,omitempty" default:"true"`
	// StoreKey, when set, is the data key, whatever BucketPrefix says; it
	// may be a template.
	StoreKey string `json:"store_key,omitempty"`
	// OnSuccessfulGet makes every check that finds the key a Success.
	OnSuccessfulGet bool `json:"on_successful_get,omitempty"`
	// OnMatchingUpdate makes a put of an unchanged value a Success.
	OnMatchingUpdate bool `json:"on_matching_update,omitempty"`
	// ResyncInterval is how often watch mode also reads the key, to catch
	// a watch that went silent; at least 1s.
	ResyncInterval watchers.Duration `json:"resync_interval,omitempty" default:"30s"`
	// RepublishTrigger is Choria's push trigger for poll mode (a stream
	// republish subject); refused: watch mode, the default, already
	// follows the key as it changes.
	RepublishTrigger string `json:"republish_trigger,omitempty"`
	// HieraConfig is Choria's tinyhiera resolution of the value against
	// the facts; refused: put the resolved value in the key, or pick the
	// node's part with an expression watcher or a template.
	HieraConfig bool `json:"hiera_config,omitempty"`
	// Query is Choria's gjson query applied to the value; refused: the
	// whole value is stored, and expressions, templates (lookup) and
	// WATCHER_DATA read any part of it.
	Query string `json:"query,omitempty"`

	mode    string // Mode with the default applied, set by Validate
	dataKey string // set by Validate
	resync  time.Duration

	log         *slog.Logger
	data        watchers.DataStore
	js          jetstream.JetStream
	onReconnect func(f func()) (remove func())

	// mu guards snap, the stream's findings handed to Check.
	mu   sync.Mutex
	snap snapshot

	// Check's own state; the Runner never runs Check concurrently.
	cond        condition          // what the last check found
	rev         uint64             // revision of the last check's value, 0 before the first
	reportedErr uint64             // snap.errSeq of the last stream error returned
	pollKV      jetstream.KeyValue // poll mode's bound bucket
}

// State is the type-specific part of the kv watcher's state event.
type State struct {
	// State is StateChanged, StateUnchanged, StateDeleted, StateMissing or
	// StateError.
	State  string `json:"state"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Mode   string `json:"mode"`
	// Revision is the revision of the entry the check looked at, when known.
	Revision uint64 `json:"revision,omitempty"`
	// Operation is "put", "delete" or "purge" when known.
	Operation string `json:"operation,omitempty"`
	// DataKey is the machine data key the value is stored under.
	DataKey string `json:"data_key"`
	// Reason says why the key is deleted or missing, or what failed.
	Reason string `json:"reason,omitempty"`
	// ParseError is set when the value looked like JSON but did not decode;
	// it was stored as a string.
	ParseError string `json:"parse_error,omitempty"`
}

// Validate checks the properties and works out the data key. A templated
// bucket, key or store_key is only parsed here; Provision renders and
// checks it.
func (w *Watcher) Validate() error {
	var errs []error
	for _, f := range w.templatable() {
		var err error
		switch {
		case *f.value == "" && f.name != "store_key":
			err = errors.New("required")
		case render.Has(*f.value):
			err = render.Check(*f.value)
		default:
			err = f.check(*f.value)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	switch w.Mode {
	case "", ModeWatch:
		w.mode = ModeWatch
	case ModePoll:
		w.mode = ModePoll
	default:
		errs = append(errs, fmt.Errorf("mode: %q: want %q or %q", w.Mode, ModeWatch, ModePoll))
	}
	if w.RepublishTrigger != "" {
		errs = append(errs, errors.New("republish_trigger: not supported: mode watch (the default) follows the key as it changes, no republish stream needed"))
	}
	if w.HieraConfig {
		errs = append(errs, errors.New("hiera_config: not supported: put the node's resolved value in the key (for example under a templated key), or select it with an expression watcher"))
	}
	if w.Query != "" {
		errs = append(errs, errors.New("query: not supported: the whole value is stored; read the part you need with an expression watcher (data.KEY.field), a template (lookup \"data.KEY.field\") or WATCHER_DATA"))
	}
	w.resync = DefaultResyncInterval
	if w.ResyncInterval != 0 {
		switch {
		case w.mode == ModePoll:
			errs = append(errs, errors.New("resync_interval: only used in watch mode"))
		case w.ResyncInterval.Std() < MinResyncInterval:
			errs = append(errs, fmt.Errorf("resync_interval: %v is below the minimum %v", w.ResyncInterval, MinResyncInterval))
		default:
			w.resync = w.ResyncInterval.Std()
		}
	}
	w.setDataKey()
	return errors.Join(errs...)
}

// property is a property that may be a template, with the check of a
// literal (or rendered) value.
type property struct {
	name  string
	value *string
	check func(string) error
}

// templatable returns the properties that may be templates: bucket, key
// and store_key.
func (w *Watcher) templatable() []property {
	return []property{
		{"bucket", &w.Bucket, checkBucket},
		{"key", &w.Key, checkKey},
		{"store_key", &w.StoreKey, checkStoreKey},
	}
}

func checkBucket(b string) error {
	if kvname.Bucket(b) != nil {
		return fmt.Errorf("%q is not a bucket name: use letters, digits, _ and -", b)
	}
	return nil
}

func checkKey(k string) error {
	if kvname.Key(k) != nil {
		return fmt.Errorf("%q is not a key: use letters, digits and -/_=. (no wildcards, no empty tokens)", k)
	}
	return nil
}

func checkStoreKey(k string) error {
	if k != "" && strings.TrimSpace(k) == "" {
		return errors.New("blank")
	}
	return nil
}

// setDataKey works out the machine data key from the properties.
func (w *Watcher) setDataKey() {
	switch {
	case w.StoreKey != "":
		w.dataKey = w.StoreKey
	case w.BucketPrefix == nil || *w.BucketPrefix:
		w.dataKey = w.Bucket + "_" + w.Key
	default:
		w.dataKey = w.Key
	}
}

// renderTemplates renders a templated bucket, key and store_key with the
// node's identity and facts and the machine data, checks what they render
// to, and puts the results in place of the templates.
func (w *Watcher) renderTemplates(d watchers.Deps) error {
	if !render.Has(w.Bucket) && !render.Has(w.Key) && !render.Has(w.StoreKey) {
		return nil
	}
	r := render.NewRenderer(d)
	var errs []error
	for _, f := range w.templatable() {
		if !render.Has(*f.value) {
			continue
		}
		out, err := r.String(*f.value)
		switch {
		case err != nil:
		case out == "":
			err = fmt.Errorf("template %q renders empty", *f.value)
		default:
			if cerr := f.check(out); cerr != nil {
				err = fmt.Errorf("template %q: %w", *f.value, cerr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			continue
		}
		*f.value = out
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.setDataKey()
	return nil
}

// DataKey returns the machine data key the value is stored under (valid
// after Validate, or after Provision when a property is a template).
func (w *Watcher) DataKey() string { return w.dataKey }

// Provision takes the machine's data store and NATS connection; the kv
// watcher cannot run without either.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if d.Data == nil {
		return errors.New("no machine data store")
	}
	if err := w.renderTemplates(d); err != nil {
		return err
	}
	if d.Conn == nil {
		return errors.New("no NATS connection: the kv watcher needs the node connected to NATS")
	}
	js, err := jetstream.New(d.Conn)
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	w.data, w.js, w.onReconnect = d.Data, js, d.OnReconnect
	return nil
}

// isNoBucket reports whether err means the bucket (its stream) does not
// exist.
func isNoBucket(err error) bool {
	return errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, nats.ErrStreamNotFound)
}

// readError explains a failed read: a direct get on a bucket that no longer
// exists finds no responders, so in that case the bucket is looked up and
// its absence returned instead.
func (w *Watcher) readError(ctx context.Context, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) || ctx.Err() != nil {
		return err
	}
	if _, berr := w.js.KeyValue(ctx, w.Bucket); isNoBucket(berr) {
		return berr
	}
	return err
}

var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
	_ watchers.Streamer    = (*Watcher)(nil)
)
