package kvwatcher

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestWatchInitialValueAndUpdates(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	rev1 := put(t, kv, "spec", `{"serial":1}`)
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec"}`)
	st := step(t, w)

	got := st.until("the initial value", changedAt(rev1))
	want := State{State: StateChanged, Bucket: "MACHINES", Key: "spec", Mode: ModeWatch, Revision: rev1, Operation: "put", DataKey: "MACHINES_spec"}
	if diff := cmp.Diff(want, got.state); diff != "" {
		t.Errorf("initial check state mismatch (-want +got):\n%s", diff)
	}
	wantData(t, d, "MACHINES_spec", map[string]any{"serial": 1.0})

	rev2 := put(t, kv, "spec", `{"serial":2}`)
	st.until("the update", changedAt(rev2))
	wantData(t, d, "MACHINES_spec", map[string]any{"serial": 2.0})

	// The same value again (different bytes, same data) changes nothing.
	rev3 := put(t, kv, "spec", " {\"serial\": 2}\n")
	st.until("the same value", func(r result) bool { return r.state.Revision == rev3 })
	if r := st.check(); r.outcome != watchers.Unchanged || r.state.State != StateUnchanged || r.err != nil {
		t.Errorf("Check() after the same value = %v, want unchanged", r)
	}
	if n := st.count(changedAt(rev3)); n != 0 {
		t.Errorf("checks that found revision %d changed = %d, want 0", rev3, n)
	}
	// A periodic check without news is Unchanged.
	if r := st.check(); r.outcome != watchers.Unchanged || r.err != nil {
		t.Errorf("periodic Check() = %v, want unchanged", r)
	}
}

func TestWatchMissingKeyThenPut(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","bucket_prefix":false}`)
	st := step(t, w)

	r := st.until("the missing key", inState(watchers.Report, StateMissing))
	if r.state.Reason != "key not found" {
		t.Errorf("missing key reason = %q, want %q", r.state.Reason, "key not found")
	}
	if r := st.check(); r.outcome != watchers.Unchanged {
		t.Errorf("second Check() of a missing key = %v, want unchanged (reported once)", r)
	}
	rev := put(t, kv, "spec", "hello")
	st.until("the new key", changedAt(rev))
	wantData(t, d, "spec", "hello")
}

func TestWatchDeletedKeyKeepsData(t *testing.T) {
	for _, tt := range []struct {
		name   string
		remove func(context.Context, jetstream.KeyValue) error
		op     string
	}{
		{name: "delete", op: "delete", remove: func(ctx context.Context, kv jetstream.KeyValue) error { return kv.Delete(ctx, "spec") }},
		{name: "purge", op: "purge", remove: func(ctx context.Context, kv jetstream.KeyValue) error { return kv.Purge(ctx, "spec") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			kv := env.bucket(t, "MACHINES")
			rev := put(t, kv, "spec", `["a","b"]`)
			w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","store_key":"desired"}`)
			st := step(t, w)
			st.until("the value", changedAt(rev))

			if err := tt.remove(t.Context(), kv); err != nil {
				t.Fatalf("%s(spec) = %v", tt.name, err)
			}
			r := st.until("the removal", inState(watchers.Report, StateDeleted))
			if r.state.Operation != tt.op || r.state.Revision <= rev || r.state.DataKey != "desired" {
				t.Errorf("removal report = %+v, want operation %s after revision %d", r.state, tt.op, rev)
			}
			wantData(t, d, "desired", []any{"a", "b"})

			// Removing it again is no news.
			if err := kv.Delete(t.Context(), "spec"); err != nil {
				t.Fatal(err)
			}
			st.until("the second delete", func(r result) bool {
				return r.outcome == watchers.Unchanged && r.state.Operation == "delete" && r.state.Revision > rev+1
			})
			wantData(t, d, "desired", []any{"a", "b"})

			// Back with the value the machine already has: reported, no transition.
			back := put(t, kv, "spec", `["a","b"]`)
			r = st.until("the key back", func(r result) bool { return r.state.Revision == back })
			if r.outcome != watchers.Report || r.state.State != StateUnchanged {
				t.Errorf("key back with the same value = %v, want a report of unchanged", r)
			}
			if n := st.count(inState(watchers.Report, StateDeleted)); n != 1 {
				t.Errorf("deleted reports = %d, want 1", n)
			}
			next := put(t, kv, "spec", `["c"]`)
			st.until("a new value", changedAt(next))
			wantData(t, d, "desired", []any{"c"})
		})
	}
}

func TestWatchInvalidJSONStoredRaw(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec"}`)
	st := step(t, w)

	bad := put(t, kv, "spec", `{"machines": [`)
	r := st.until("the invalid value", changedAt(bad))
	if !strings.Contains(r.state.ParseError, "value looks like JSON but does not decode") {
		t.Errorf("parse_error = %q, want the decoding error", r.state.ParseError)
	}
	wantData(t, d, "MACHINES_spec", `{"machines": [`)

	good := put(t, kv, "spec", `{"machines": []}`)
	r = st.until("the fixed value", changedAt(good))
	if r.state.ParseError != "" {
		t.Errorf("parse_error = %q after a valid value, want none", r.state.ParseError)
	}
	wantData(t, d, "MACHINES_spec", map[string]any{"machines": []any{}})
}

func TestWatchRestartWithStoredValue(t *testing.T) {
	for _, tt := range []struct {
		name    string
		props   string
		outcome watchers.Outcome
		state   string
	}{
		{name: "unchanged", props: `{"bucket":"MACHINES","key":"spec"}`, outcome: watchers.Unchanged, state: StateUnchanged},
		{name: "on_successful_get", props: `{"bucket":"MACHINES","key":"spec","on_successful_get":true}`, outcome: watchers.Success, state: StateUnchanged},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			kv := env.bucket(t, "MACHINES")
			rev := put(t, kv, "spec", `{"serial":7}`)
			w, d := env.build(t, tt.props)
			// What the machine persisted before the restart.
			if err := d.Data.Put("MACHINES_spec", map[string]any{"serial": 7}); err != nil {
				t.Fatal(err)
			}
			st := step(t, w)
			// The watch may deliver the stored value before the first
			// check (it did under -race): then that check is the first
			// after the restart. Before it, a check has nothing to report.
			r := st.check()
			if r.state.Revision != rev {
				if r.outcome != watchers.Unchanged || r.err != nil {
					t.Errorf("Check() before the stream delivered = %v, want unchanged", r)
				}
				r = st.until("the stored value", func(r result) bool { return r.state.Revision == rev })
			}
			if r.outcome != tt.outcome || r.state.State != tt.state || r.err != nil {
				t.Errorf("first check after restart = %v, want %s/%s", r, tt.outcome, tt.state)
			}
			// A periodic check finds the key again: on_successful_get fires again.
			if r := st.check(); r.outcome != tt.outcome {
				t.Errorf("periodic check after restart = %v, want %s", r, tt.outcome)
			}
		})
	}
}

func TestOnSuccessfulGetNeedsTheKey(t *testing.T) {
	env := newEnv(t)
	env.bucket(t, "MACHINES")
	w, _ := env.build(t, `{"bucket":"MACHINES","key":"spec","on_successful_get":true}`)
	st := step(t, w)
	st.until("the missing key", inState(watchers.Report, StateMissing))
	if r := st.check(); r.outcome != watchers.Unchanged {
		t.Errorf("periodic Check() of a missing key = %v, want unchanged", r)
	}
}

func TestOnMatchingUpdate(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	rev1 := put(t, kv, "spec", "v1")
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","on_matching_update":true}`)
	if err := d.Data.Put("MACHINES_spec", "v1"); err != nil {
		t.Fatal(err)
	}
	st := step(t, w)
	// Not on the first read after start.
	r := st.until("the first read", func(r result) bool { return r.state.Revision == rev1 })
	if r.outcome != watchers.Unchanged {
		t.Errorf("first read of an unchanged value = %v, want unchanged", r)
	}
	rev2 := put(t, kv, "spec", "v1")
	r = st.until("the matching update", func(r result) bool { return r.state.Revision == rev2 })
	if r.outcome != watchers.Success || r.state.State != StateChanged || r.state.Reason != "updated with the same value" {
		t.Errorf("matching update = %v, want success/changed", r)
	}
	if r := st.check(); r.outcome != watchers.Unchanged {
		t.Errorf("periodic Check() after the matching update = %v, want unchanged", r)
	}
}

func TestWatchMissingBucketThenCreated(t *testing.T) {
	env := newEnv(t)
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","resync_interval":"1s"}`)
	st := step(t, w)

	r := st.until("the missing bucket", inState(watchers.Report, StateMissing))
	if r.state.Reason != "bucket MACHINES not found" {
		t.Errorf("missing bucket reason = %q, want %q", r.state.Reason, "bucket MACHINES not found")
	}
	kv := env.bucket(t, "MACHINES")
	rev := put(t, kv, "spec", `{"ok":true}`)
	st.until("the value in the new bucket", changedAt(rev))
	wantData(t, d, "MACHINES_spec", map[string]any{"ok": true})
	if n := st.count(func(r result) bool {
		return r.state.Reason == "bucket MACHINES not found" && r.outcome == watchers.Report
	}); n != 1 {
		t.Errorf("missing bucket reports = %d, want 1", n)
	}
}

func TestWatchBucketRebuiltKeepsData(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	put(t, kv, "other", "x") // so the rebuilt bucket's revisions restart below the old ones
	rev := put(t, kv, "spec", "v1")
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","resync_interval":"1s"}`)
	st := step(t, w)
	st.until("the value", changedAt(rev))

	if err := env.js.DeleteKeyValue(t.Context(), "MACHINES"); err != nil {
		t.Fatalf("DeleteKeyValue(MACHINES) = %v", err)
	}
	st.until("the deleted bucket", func(r result) bool {
		return r.outcome == watchers.Report && r.state.Reason == "bucket MACHINES not found"
	})
	wantData(t, d, "MACHINES_spec", "v1")

	kv = env.bucket(t, "MACHINES")
	rev2 := put(t, kv, "spec", "v2")
	if rev2 >= rev {
		t.Fatalf("rebuilt bucket revision %d, want below %d for this test", rev2, rev)
	}
	st.until("the value in the rebuilt bucket", changedAt(rev2))
	wantData(t, d, "MACHINES_spec", "v2")
}

func TestWatchStreamErrorReportedOnce(t *testing.T) {
	s := natstest.RunJetStream(t)
	nc := natstest.Connect(t, s, nats.NoReconnect())
	env := envFor(t, nc)
	w, _ := env.build(t, `{"bucket":"MACHINES","key":"spec","resync_interval":"1s"}`)
	nc.Close()
	st := step(t, w)
	r := st.until("the stream error", func(r result) bool { return r.err != nil })
	if !errors.Is(r.err, nats.ErrConnectionClosed) || r.state.State != StateError || r.outcome != watchers.Failure {
		t.Errorf("check after the stream failed = %v, want a failure wrapping %v", r, nats.ErrConnectionClosed)
	}
	if r := st.check(); r.err != nil || r.outcome != watchers.Unchanged {
		t.Errorf("next Check() = %v, want unchanged (the error is reported once)", r)
	}
}

// TestMissingKeyLogLevels checks that a fresh node waiting for its first
// value logs it as information, and that losing a value it had is a
// warning.
func TestMissingKeyLogLevels(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	var logs syncbuf.Buffer
	d := watchertest.Deps(t)
	d.Conn = env.nc
	d.Log = logs.Logger(slog.LevelInfo)
	w := watchertest.BuildWith(t, d, "kv", `{"bucket":"MACHINES","key":"spec"}`).(*Watcher)
	st := step(t, w)

	st.until("the missing key", inState(watchers.Report, StateMissing))
	if got := logs.String(); !strings.Contains(got, `level=INFO msg="kv key has no value yet; waiting for one"`) || strings.Contains(got, "level=WARN") {
		t.Errorf("log for a key that never had a value:\n%s\nwant one INFO line, no warning", got)
	}
	rev := put(t, kv, "spec", "hello")
	st.until("the value", changedAt(rev))
	if err := kv.Delete(t.Context(), "spec"); err != nil {
		t.Fatal(err)
	}
	st.until("the delete", inState(watchers.Report, StateDeleted))
	if got := logs.String(); !strings.Contains(got, `level=WARN msg="kv key unavailable; keeping the stored data" state=deleted`) {
		t.Errorf("log after the key was deleted:\n%s\nwant a warning", got)
	}
}

// TestRetryDelaySpreadsAFleet checks that the stream's backoff is drawn at
// random: agents that lost their watches in the same instant (a server
// restart, a server that dropped its whole JetStream API backlog) would
// otherwise all try again in the same instant, every time.
func TestRetryDelaySpreadsAFleet(t *testing.T) {
	for _, resync := range []time.Duration{DefaultResyncInterval, 2 * time.Second} {
		s := &stream{w: &Watcher{resync: resync}}
		for n := 1; n <= 10; n++ {
			top := backoff.Policy{First: retryFirst, Max: min(retryMax, resync)}.Delay(n)
			seen := map[time.Duration]bool{}
			for range 200 {
				d := s.retryDelay(n)
				if d < top/2 || d > top {
					t.Fatalf("resync %v: retryDelay(%d) = %v, want within [%v, %v]", resync, n, d, top/2, top)
				}
				seen[d] = true
			}
			if len(seen) < 50 {
				t.Errorf("resync %v: retryDelay(%d) gave %d distinct delays in 200 draws, want them spread", resync, n, len(seen))
			}
		}
	}
}
