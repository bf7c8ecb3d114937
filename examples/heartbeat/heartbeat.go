// Package heartbeat is an example mms watcher plugin, kept in a module of
// its own the way a third party would ship one: the "heartbeat" watcher
// type. On every check it counts a beat and publishes a state event with
// the count and how long the watcher has been running, so a dashboard can
// tell that the machine is alive.
//
// In machine.yaml:
//
//	watchers:
//	  - name: pulse
//	    type: heartbeat
//	    state_match: [BEATING]
//	    interval: 30s
//	    success_transition: rest   # optional, fired every success_every beats
//	    properties:
//	      message: hello from the edge
//	      success_every: 10
//
// Its state events have the CloudEvent type
// io.choria.machine.watcher.heartbeat.v1.state on the subject
// choria.machine.watcher.heartbeat.state, with the fields of [State].
//
// Compile it into mms by listing it in user_plugins.yaml and running
// `go generate ./plugins` (see docs/build-your-own.md):
//
//	heartbeat: example.com/mms-heartbeat
//
// The whole contract of a watcher plugin is in this file: a config struct
// whose exported fields are the properties, Check, the optional
// [watchers.Validator] and [watchers.Provisioner] interfaces, and
// [watchers.Register] from init.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mms-io/mms/watchers"
)

const (
	// Type is the watcher type used in machine.yaml.
	Type = "heartbeat"
	// Version is the version of the state event's fields.
	Version = "v1"
	// MaxMessage is the longest message, in bytes.
	MaxMessage = 256
)

func init() {
	watchers.Register(watchers.Info{
		Type:    Type,
		Version: Version,
		// New returns a fresh, unconfigured watcher and has no side
		// effects: the agent decodes the properties into it next.
		New: func() watchers.Watcher { return &Watcher{now: time.Now} },
		// Used when machine.yaml gives no interval.
		DefaultInterval: watchers.Duration(time.Minute),
		// machine.yaml may not ask for faster beats than this.
		MinInterval: watchers.Duration(time.Second),
	})
}

// Watcher is the heartbeat watcher: its exported fields are its
// machine.yaml properties (decoded strictly, so a misspelt property is an
// error), its unexported fields its runtime state.
type Watcher struct {
	// Message is included in every state event. Optional, at most
	// MaxMessage bytes.
	Message string `json:"message,omitempty"`
	// SuccessEvery, when positive, makes every SuccessEvery-th beat a
	// success, firing the watcher's success_transition. Otherwise beats
	// only report.
	SuccessEvery int `json:"success_every,omitempty"`

	now     func() time.Time
	started time.Time // when the watcher was provisioned
	beats   uint64
}

// State is the type-specific part of the heartbeat's state event.
type State struct {
	// Beats counts the checks since the watcher started.
	Beats uint64 `json:"beats"`
	// UptimeSeconds is the time since the watcher started.
	UptimeSeconds int64 `json:"uptime_seconds"`
	// Message is the configured message, if any.
	Message string `json:"message,omitempty"`
}

// Validate checks the properties. It is pure (no I/O, no clock), so
// `mms machine validate` runs it on a laptop exactly as the node will, and
// reports every problem at once.
func (w *Watcher) Validate() error {
	var errs []error
	if len(w.Message) > MaxMessage {
		errs = append(errs, fmt.Errorf("message: %d bytes is longer than %d", len(w.Message), MaxMessage))
	}
	if w.SuccessEvery < 0 {
		errs = append(errs, fmt.Errorf("success_every: %d is negative", w.SuccessEvery))
	}
	return errors.Join(errs...)
}

// Provision is called once before the first check with what the watcher
// may use of its machine and node. The heartbeat only notes the time; a
// watcher that talks to NATS would keep d.Conn here. Provision must not
// start goroutines: the agent owns every loop.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.started = w.now()
	if d.Log != nil {
		d.Log.Debug("heartbeat provisioned", "success_every", w.SuccessEvery)
	}
	return nil
}

// Check counts one beat. The agent calls it at start, on the interval and
// after every transition into a state in state_match; it never calls Check
// concurrently with itself, so the counter needs no lock.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	if err := ctx.Err(); err != nil {
		return watchers.Result{}, err
	}
	if w.started.IsZero() {
		w.started = w.now()
	}
	w.beats++
	outcome := watchers.Report // publish an event, fire nothing
	if w.SuccessEvery > 0 && w.beats%uint64(w.SuccessEvery) == 0 {
		outcome = watchers.Success // publish and fire success_transition
	}
	return watchers.Result{
		Outcome: outcome,
		// A value, not a pointer: the agent keeps it for announces.
		State: State{
			Beats:         w.beats,
			UptimeSeconds: int64(w.now().Sub(w.started) / time.Second),
			Message:       w.Message,
		},
	}, nil
}

// Interface guards: the build fails if Watcher stops implementing them.
var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
)
