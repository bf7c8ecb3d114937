package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/watchers"
)

// The test binary registers its own watcher types: "probe" (a watcher
// whose outcomes the test scripts), "probe_stream" (a probe that is also a
// Streamer) and "probe_tick" (a probe with a default interval). They never
// collide with the built-in types, which this package does not import.
func init() {
	watchers.Register(watchers.Info{
		Type: "probe", Version: "v1", New: func() watchers.Watcher { return new(probe) },
		MinInterval: watchers.Duration(time.Second), Timeout: watchers.Duration(5 * time.Second),
	})
	watchers.Register(watchers.Info{
		Type: "probe_stream", Version: "v1", New: func() watchers.Watcher { return new(streamProbe) },
	})
	watchers.Register(watchers.Info{
		Type: "probe_tick", Version: "v2", New: func() watchers.Watcher { return new(probe) },
		DefaultInterval: watchers.Duration(10 * time.Second),
	})
}

// step is one scripted check result.
type step struct {
	res   watchers.Result
	err   error
	panic bool
	block bool // wait for the check's ctx
}

// probeCtl is the test's handle on every probe watcher built with its key.
type probeCtl struct {
	steps        chan step
	checks       atomic.Int64
	closed       atomic.Int64
	streams      atomic.Int64
	provisionErr error
	streamErrs   chan error

	mu      sync.Mutex
	deps    watchers.Deps
	states  []bool
	trigger func()
}

// probes maps keys to controls. It is test-binary state only.
var probes = struct {
	sync.Mutex
	m map[string]*probeCtl
}{m: map[string]*probeCtl{}}

var probeSeq atomic.Int64

// newProbe returns a control under a fresh key, removed when the test ends.
func newProbe(t testing.TB) (*probeCtl, string) {
	t.Helper()
	key := fmt.Sprintf("p%d", probeSeq.Add(1))
	c := &probeCtl{steps: make(chan step, 64), streamErrs: make(chan error, 16)}
	probes.Lock()
	probes.m[key] = c
	probes.Unlock()
	t.Cleanup(func() {
		probes.Lock()
		delete(probes.m, key)
		probes.Unlock()
	})
	return c, key
}

func (c *probeCtl) push(s ...step) {
	for _, x := range s {
		c.steps <- x
	}
}

func (c *probeCtl) stateLog() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bool(nil), c.states...)
}

func (c *probeCtl) triggerFunc() func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trigger
}

// probe is a scripted watcher.
type probe struct {
	Key string `json:"key"`
	// Reject makes Validate fail, for validation tests.
	Reject bool `json:"reject,omitempty"`

	ctl *probeCtl
}

func (p *probe) Validate() error {
	if p.Key == "" {
		return errors.New("key is required")
	}
	if p.Reject {
		return errors.New("rejected on request")
	}
	return nil
}

func (p *probe) Provision(d watchers.Deps) error {
	probes.Lock()
	p.ctl = probes.m[p.Key]
	probes.Unlock()
	if p.ctl == nil {
		return fmt.Errorf("no probe control %q", p.Key)
	}
	p.ctl.mu.Lock()
	p.ctl.deps = d
	p.ctl.mu.Unlock()
	return p.ctl.provisionErr
}

func (p *probe) Check(ctx context.Context) (watchers.Result, error) {
	p.ctl.checks.Add(1)
	select {
	case s := <-p.ctl.steps:
		if s.panic {
			panic("probe asked to panic")
		}
		if s.block {
			<-ctx.Done()
			return watchers.Result{}, ctx.Err()
		}
		return s.res, s.err
	default:
		return watchers.Result{Outcome: watchers.Unchanged}, nil
	}
}

func (p *probe) StateChanged(active bool) {
	p.ctl.mu.Lock()
	p.ctl.states = append(p.ctl.states, active)
	p.ctl.mu.Unlock()
}

func (p *probe) Close() error {
	if p.ctl != nil {
		p.ctl.closed.Add(1)
	}
	return nil
}

// streamProbe is a probe that streams: it exposes its trigger and returns
// the errors the test queues, else blocks until ctx is done.
type streamProbe struct{ probe }

func (p *streamProbe) Stream(ctx context.Context, trigger func()) error {
	p.ctl.streams.Add(1)
	p.ctl.mu.Lock()
	p.ctl.trigger = trigger
	p.ctl.mu.Unlock()
	select {
	case err := <-p.ctl.streamErrs:
		return err
	case <-ctx.Done():
		return nil
	}
}

var (
	_ watchers.Validator     = (*probe)(nil)
	_ watchers.Provisioner   = (*probe)(nil)
	_ watchers.StateObserver = (*probe)(nil)
	_ watchers.Closer        = (*probe)(nil)
	_ watchers.Streamer      = (*streamProbe)(nil)
)

// recorder is a Publisher that keeps every event, for tests that do not
// need NATS on the wire.
type recorder struct {
	mu     sync.Mutex
	events []recorded
}

type recorded struct {
	subject string
	ev      event.Event
}

func (r *recorder) Publish(_ context.Context, subject string, ev event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recorded{subject, ev})
	return nil
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.events...)
}

// data decodes an event's data as a map.
func data(t testing.TB, ev event.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := ev.DataAs(&m); err != nil {
		t.Fatalf("decode event data: %v", err)
	}
	return m
}

// find returns the recorded events whose data match every key in want.
func (r *recorder) find(t testing.TB, typ string, want map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range r.all() {
		if e.ev.Type() != typ {
			continue
		}
		d := data(t, e.ev)
		ok := true
		for k, v := range want {
			if fmt.Sprint(d[k]) != fmt.Sprint(v) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, d)
		}
	}
	return out
}

// machineYAML renders a small two-state machine whose watchers are the
// given YAML list items (already indented by two spaces).
func machineYAML(name, version, watchersYAML string) string {
	return strings.TrimSpace(fmt.Sprintf(`
name: %s
version: %s
initial_state: idle
transitions:
  - name: go
    from: [idle]
    destination: busy
  - name: back
    from: [busy]
    destination: idle
  - name: again
    from: [busy]
    destination: busy
watchers:
%s
`, name, version, watchersYAML)) + "\n"
}
