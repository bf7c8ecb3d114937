package kvwatcher

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitFor is how long tests poll for an outcome that normally takes
// milliseconds.
const waitFor = 10 * time.Second

// kvEnv is a JetStream server with a client connection for one test.
type kvEnv struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newEnv(t *testing.T) *kvEnv {
	t.Helper()
	s := natstest.RunJetStream(t)
	return envFor(t, natstest.Connect(t, s))
}

func envFor(t testing.TB, nc *nats.Conn) *kvEnv {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New() = %v", err)
	}
	return &kvEnv{nc: nc, js: js}
}

// bucket creates bucket.
func (e *kvEnv) bucket(t testing.TB, bucket string) jetstream.KeyValue {
	t.Helper()
	kv, err := e.js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		t.Fatalf("CreateKeyValue(%s) = %v", bucket, err)
	}
	return kv
}

// kv binds the MACHINES bucket.
func (e *kvEnv) kv(t testing.TB) jetstream.KeyValue {
	t.Helper()
	kv, err := e.js.KeyValue(context.Background(), "MACHINES")
	if err != nil {
		t.Fatalf("KeyValue(MACHINES) = %v", err)
	}
	return kv
}

func put(t testing.TB, kv jetstream.KeyValue, key, value string) uint64 {
	t.Helper()
	rev, err := kv.PutString(context.Background(), key, value)
	if err != nil {
		t.Fatalf("Put(%s, %q) = %v", key, value, err)
	}
	return rev
}

// build creates a kv watcher on e's connection with fresh test deps and
// properties props.
func (e *kvEnv) build(t *testing.T, props string) (*Watcher, watchers.Deps) {
	t.Helper()
	d := watchertest.Deps(t)
	d.Conn = e.nc
	return watchertest.BuildWith(t, d, "kv", props).(*Watcher), d
}

// result is one check's outcome as the Runner would see it.
type result struct {
	outcome watchers.Outcome
	state   State
	err     error
}

func (r result) String() string {
	return fmt.Sprintf("%s/%s rev %d reason %q err %v", r.outcome, r.state.State, r.state.Revision, r.state.Reason, r.err)
}

// stepper drives a watcher the way the agent's Runner does, from the test's
// goroutine: Stream runs in a goroutine, and each step waits for the
// stream's trigger and then checks. Every check's result is kept.
type stepper struct {
	t       *testing.T
	w       *Watcher
	trig    chan struct{}
	results []result
	// stop ends the stream and waits for it; it runs when the test ends.
	stop func()
}

// step starts w's Stream until the test ends.
func step(t *testing.T, w *Watcher) *stepper {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st := &stepper{t: t, w: w, trig: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Stream(ctx, func() {
			select {
			case st.trig <- struct{}{}:
			default:
			}
		}); err != nil {
			t.Errorf("Stream() = %v, want nil", err)
		}
	})
	var once sync.Once
	st.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(st.stop)
	return st
}

// check runs one check now, as a periodic check of the Runner would.
func (st *stepper) check() result {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := st.w.Check(ctx)
	s, _ := res.State.(State)
	r := result{outcome: res.Outcome, state: s, err: err}
	st.results = append(st.results, r)
	return r
}

// until checks after every trigger until a check's result satisfies match,
// and returns that result; it fails the test after waitFor.
func (st *stepper) until(what string, match func(result) bool) result {
	st.t.Helper()
	return st.untilWithin(waitFor, what, match)
}

// untilWithin is until with its own time limit.
func (st *stepper) untilWithin(limit time.Duration, what string, match func(result) bool) result {
	st.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		select {
		case <-st.trig:
		case <-deadline.C:
			st.t.Fatalf("no check found %s within %v; results: %v", what, limit, st.results)
		}
		if r := st.check(); match(r) {
			return r
		}
	}
}

// count returns how many results so far satisfy match.
func (st *stepper) count(match func(result) bool) int {
	n := 0
	for _, r := range st.results {
		if match(r) {
			n++
		}
	}
	return n
}

func changedAt(rev uint64) func(result) bool {
	return func(r result) bool {
		return r.outcome == watchers.Success && r.state.State == StateChanged && r.state.Revision == rev
	}
}

func inState(outcome watchers.Outcome, state string) func(result) bool {
	return func(r result) bool { return r.outcome == outcome && r.state.State == state }
}

// wantData fails the test unless the data store holds want under key.
func wantData(t *testing.T, d watchers.Deps, key string, want any) {
	t.Helper()
	got, ok := d.Data.Get(key)
	if !ok {
		t.Fatalf("Data.Get(%q) found nothing, want %v", key, want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Data.Get(%q) mismatch (-want +got):\n%s", key, diff)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
