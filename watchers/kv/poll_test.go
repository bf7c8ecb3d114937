package kvwatcher

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/nats-io/nats.go"
)

// pollCheck runs one poll-mode check.
func pollCheck(t *testing.T, w *Watcher) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := w.Check(ctx)
	s, _ := res.State.(State)
	return result{outcome: res.Outcome, state: s, err: err}
}

func TestPoll(t *testing.T) {
	env := newEnv(t)
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","mode":"poll","bucket_prefix":false}`)
	type want struct {
		outcome watchers.Outcome
		state   string
		reason  string
	}
	for _, step := range []struct {
		name string
		do   func(t *testing.T)
		want want
		data any // nil: not checked
	}{
		{name: "no bucket", want: want{watchers.Report, StateMissing, "bucket MACHINES not found"}},
		{name: "still no bucket", want: want{watchers.Unchanged, StateMissing, "bucket MACHINES not found"}},
		{name: "no key", do: func(t *testing.T) { env.bucket(t, "MACHINES") }, want: want{watchers.Report, StateMissing, "key not found"}},
		{name: "put", do: func(t *testing.T) { put(t, env.kv(t), "spec", `{"v":1}`) },
			want: want{watchers.Success, StateChanged, ""}, data: map[string]any{"v": 1.0}},
		{name: "nothing new", want: want{watchers.Unchanged, StateUnchanged, ""}},
		{name: "same value", do: func(t *testing.T) { put(t, env.kv(t), "spec", `{"v": 1}`) }, want: want{watchers.Unchanged, StateUnchanged, ""}},
		{name: "new value", do: func(t *testing.T) { put(t, env.kv(t), "spec", `{"v":2}`) },
			want: want{watchers.Success, StateChanged, ""}, data: map[string]any{"v": 2.0}},
		{name: "deleted", do: func(t *testing.T) {
			if err := env.kv(t).Delete(t.Context(), "spec"); err != nil {
				t.Fatal(err)
			}
		}, want: want{watchers.Report, StateDeleted, "key not found: deleted or purged"}, data: map[string]any{"v": 2.0}},
		{name: "still deleted", want: want{watchers.Unchanged, StateDeleted, "key not found: deleted or purged"}, data: map[string]any{"v": 2.0}},
		{name: "back", do: func(t *testing.T) { put(t, env.kv(t), "spec", `{"v":2}`) },
			want: want{watchers.Report, StateUnchanged, "key readable again; value unchanged"}, data: map[string]any{"v": 2.0}},
	} {
		if step.do != nil {
			step.do(t)
		}
		r := pollCheck(t, w)
		got := want{r.outcome, r.state.State, r.state.Reason}
		if r.err != nil || got != step.want || r.state.Mode != ModePoll {
			t.Fatalf("step %q: Check() = %v (mode %s), want %+v", step.name, r, r.state.Mode, step.want)
		}
		if step.data != nil {
			wantData(t, d, "spec", step.data)
		}
	}
}

func TestPollOnMatchingUpdate(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	put(t, kv, "spec", "same")
	w, d := env.build(t, `{"bucket":"MACHINES","key":"spec","mode":"poll","on_matching_update":true}`)
	if err := d.Data.Put("MACHINES_spec", "same"); err != nil {
		t.Fatal(err)
	}
	if r := pollCheck(t, w); r.outcome != watchers.Unchanged {
		t.Errorf("first poll = %v, want unchanged (not on the first read after start)", r)
	}
	rev := put(t, kv, "spec", "same")
	if r := pollCheck(t, w); r.outcome != watchers.Success || r.state.Revision != rev {
		t.Errorf("poll after a matching update = %v, want success at revision %d", r, rev)
	}
	if r := pollCheck(t, w); r.outcome != watchers.Unchanged {
		t.Errorf("poll without news = %v, want unchanged", r)
	}
}

func TestPollOnSuccessfulGet(t *testing.T) {
	env := newEnv(t)
	kv := env.bucket(t, "MACHINES")
	put(t, kv, "spec", "v")
	w, _ := env.build(t, `{"bucket":"MACHINES","key":"spec","mode":"poll","on_successful_get":true}`)
	for i := range 3 {
		if r := pollCheck(t, w); r.outcome != watchers.Success {
			t.Errorf("poll %d = %v, want success on every successful get", i, r)
		}
	}
}

func TestPollError(t *testing.T) {
	s := natstest.RunJetStream(t)
	nc := natstest.Connect(t, s, nats.NoReconnect())
	w, _ := envFor(t, nc).build(t, `{"bucket":"MACHINES","key":"spec","mode":"poll"}`)
	nc.Close()
	for i := range 2 {
		r := pollCheck(t, w)
		if !errors.Is(r.err, nats.ErrConnectionClosed) || r.outcome != watchers.Failure || r.state.State != StateError {
			t.Errorf("poll %d on a closed connection = %v, want a failure wrapping %v", i, r, nats.ErrConnectionClosed)
		}
	}
}

// TestPollStreamWithoutReconnectHook: with no reconnect hook there is
// nothing to stream in poll mode and Stream ends at once.
func TestPollStreamWithoutReconnectHook(t *testing.T) {
	env := newEnv(t)
	w, _ := env.build(t, `{"bucket":"MACHINES","key":"spec","mode":"poll"}`)
	if err := w.Stream(t.Context(), func() { t.Error("trigger called") }); err != nil {
		t.Errorf("Stream() = %v, want nil", err)
	}
}
