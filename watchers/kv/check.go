package kvwatcher

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/mms-io/mms/watchers"
	"github.com/nats-io/nats.go/jetstream"
)

// condition is what a read found of the key.
type condition int

const (
	condUnknown  condition = iota // nothing read yet
	condPresent                   // the key holds a value
	condDeleted                   // the key was deleted or purged
	condMissing                   // the key is not there (and was not seen go)
	condNoBucket                  // the bucket does not exist
)

// observation is one read of the key: a watch entry, a Get, or a miss.
type observation struct {
	cond     condition
	revision uint64 // 0 when not known
	op       string // "put", "delete", "purge" when known
	value    any    // the parsed value when present
	parseErr error  // the value looked like JSON but was not
	reason   string // why the key is deleted or missing
}

// snapshot is what the stream last found, read by Check.
type snapshot struct {
	obs observation
	// err is the stream's current failure (nil while it works) and errSeq
	// counts distinct failures, so each is returned by one check only.
	err    error
	errSeq uint64
}

// entryObservation turns a KV entry into an observation.
func entryObservation(e jetstream.KeyValueEntry) observation {
	switch e.Operation() {
	case jetstream.KeyValueDelete:
		return observation{cond: condDeleted, revision: e.Revision(), op: "delete", reason: "key deleted"}
	case jetstream.KeyValuePurge:
		return observation{cond: condDeleted, revision: e.Revision(), op: "purge", reason: "key purged"}
	}
	v, err := parseValue(e.Value())
	return observation{cond: condPresent, revision: e.Revision(), op: "put", value: v, parseErr: err}
}

// notFound is the observation for a read that did not find the key, given
// what was known of it before.
func notFound(prev condition) observation {
	if prev == condPresent || prev == condDeleted {
		return observation{cond: condDeleted, reason: "key not found: deleted or purged"}
	}
	return observation{cond: condMissing, reason: "key not found"}
}

// noBucket is the observation for a bucket that does not exist.
func noBucket(bucket string) observation {
	return observation{cond: condNoBucket, reason: fmt.Sprintf("bucket %s not found", bucket)}
}

// Check compares the key's current value with the machine data. In watch
// mode it reads what the stream found last and does no I/O; in poll mode it
// reads the key.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	if w.mode == ModePoll {
		o, err := w.read(ctx)
		if err != nil {
			return w.result(watchers.Failure, StateError, observation{reason: err.Error()}), err
		}
		return w.evaluate(o)
	}
	w.mu.Lock()
	snap := w.snap
	w.mu.Unlock()
	if snap.err != nil && snap.errSeq != w.reportedErr {
		w.reportedErr = snap.errSeq
		return w.result(watchers.Failure, StateError, observation{reason: snap.err.Error()}), snap.err
	}
	return w.evaluate(snap.obs)
}

// evaluate decides what o means for the machine: store a new value, report
// a deleted or missing key once, or nothing.
func (w *Watcher) evaluate(o observation) (watchers.Result, error) {
	prev := w.cond
	switch o.cond {
	case condUnknown:
		return watchers.Result{Outcome: watchers.Unchanged}, nil
	case condDeleted, condMissing, condNoBucket:
		w.cond = o.cond
		state := StateMissing
		if o.cond == condDeleted {
			state = StateDeleted
		}
		if o.cond == prev {
			return w.result(watchers.Unchanged, state, o), nil
		}
		if _, had := w.data.Get(w.dataKey); !had && o.cond == condMissing {
			// Nothing was ever stored: a fresh node waiting for its
			// first value, not a lost one.
			w.log.Info("kv key has no value yet; waiting for one", "bucket", w.Bucket, "key", w.Key, "data_key", w.dataKey)
		} else {
			w.log.Warn("kv key unavailable; keeping the stored data", "state", state, "reason", o.reason, "data_key", w.dataKey)
		}
		return w.result(watchers.Report, state, o), nil
	}

	cached, had := w.data.Get(w.dataKey)
	changed := !had || !reflect.DeepEqual(cached, o.value)
	newer := w.rev != 0 && o.revision > w.rev
	if changed {
		if err := w.data.Put(w.dataKey, o.value); err != nil {
			err = fmt.Errorf("store the value of %s/%s: %w", w.Bucket, w.Key, err)
			return w.result(watchers.Failure, StateError, observation{revision: o.revision, reason: err.Error()}), err
		}
	}
	w.cond, w.rev = condPresent, o.revision
	switch {
	case changed:
		if o.parseErr != nil {
			w.log.Warn("kv value looks like JSON but is not; stored as a string", "revision", o.revision, "error", o.parseErr)
		}
		return w.result(watchers.Success, StateChanged, o), nil
	case w.OnMatchingUpdate && newer:
		o.reason = "updated with the same value"
		return w.result(watchers.Success, StateChanged, o), nil
	case w.OnSuccessfulGet:
		return w.result(watchers.Success, StateUnchanged, o), nil
	case prev != condPresent && prev != condUnknown:
		o.reason = "key readable again; value unchanged"
		return w.result(watchers.Report, StateUnchanged, o), nil
	}
	return w.result(watchers.Unchanged, StateUnchanged, o), nil
}

func (w *Watcher) result(out watchers.Outcome, state string, o observation) watchers.Result {
	st := State{
		State: state, Bucket: w.Bucket, Key: w.Key, Mode: w.mode,
		Revision: o.revision, Operation: o.op, DataKey: w.dataKey, Reason: o.reason,
	}
	if o.parseErr != nil {
		st.ParseError = o.parseErr.Error()
	}
	return watchers.Result{Outcome: out, State: st}
}

// read is poll mode's read of the key. A missing bucket or key is an
// observation, not an error.
func (w *Watcher) read(ctx context.Context) (observation, error) {
	if w.pollKV == nil {
		kv, err := w.js.KeyValue(ctx, w.Bucket)
		if isNoBucket(err) {
			return noBucket(w.Bucket), nil
		}
		if err != nil {
			return observation{}, fmt.Errorf("open bucket %s: %w", w.Bucket, err)
		}
		w.pollKV = kv
	}
	e, err := w.pollKV.Get(ctx, w.Key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		err = w.readError(ctx, err)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return notFound(w.cond), nil
	case isNoBucket(err):
		w.pollKV = nil
		return noBucket(w.Bucket), nil
	case err != nil:
		return observation{}, fmt.Errorf("read %s/%s: %w", w.Bucket, w.Key, err)
	}
	return entryObservation(e), nil
}
