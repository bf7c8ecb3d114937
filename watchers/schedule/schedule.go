// Package schedulewatcher is the "schedule" watcher: a switch that is "on"
// during time windows that open at cron schedule times and last duration,
// and "off" otherwise. Switching on fires the success_transition, switching
// off the fail_transition.
//
// Schedules are standard 5-field cron expressions (minute hour day-of-month
// month day-of-week) or the descriptors @yearly, @annually, @monthly,
// @weekly, @daily, @midnight and @hourly, evaluated in the node's local time,
// in the timezone property's zone, or in a zone given by a CRON_TZ=Zone
// prefix on the expression itself. @every is rejected: a window needs fixed
// start times. Overlapping windows merge into one "on" period.
//
// The state is computed from the clock at each check, and each check asks to
// be checked again at the next possible edge (at least once a minute, so a
// wall-clock jump is noticed), so the watcher needs no ticker. Unlike
// Choria, a window that is already open when the agent starts (or when the
// machine enters a state the watcher runs in) counts: the switch turns on at
// once.
//
// Edges and events:
//   - off (or first check) → on: Success, state "on";
//   - on → off: Failure, state "off";
//   - the first check finding "off": nothing (there was no edge);
//   - re-entering a state the watcher runs in after a state it does not run
//     in reports the current state again (Choria's behaviour): Success if on,
//     Failure if off. With skip_trigger_on_reenter, re-entering during the
//     same on period that already fired the success transition does nothing.
//
// With start_splay, each window opens a pseudo-random delay in
// [0, start_splay) after its schedule time and still closes duration after
// it. The delay is derived from the node identity, machine, watcher and the
// window's start time, so it is stable across restarts and differs between
// nodes.
package schedulewatcher

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"

	"github.com/mms-io/mms/watchers"
	"github.com/robfig/cron/v3"
)

// Defaults and limits of the schedule watcher.
const (
	// DefaultDuration is the window length when duration is unset or
	// under a second (Choria's rule).
	DefaultDuration = time.Minute
	// MaxRecheck is the longest a check asks to wait before the next one.
	MaxRecheck = time.Minute
	// MaxStartSplay caps start_splay (a check visits every fire within
	// start_splay of now, at most 1440 for a minutely schedule).
	MaxStartSplay = 24 * time.Hour
)

func init() {
	watchers.Register(watchers.Info{
		Type:    "schedule",
		Version: "v1",
		New:     func() watchers.Watcher { return &Watcher{now: time.Now} },
	})
}

// parser accepts 5-field expressions and @descriptors, like crontab(5).
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Watcher is the schedule watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// Schedules lists when windows open: cron expressions or @descriptors.
	// Required.
	Schedules []string `json:"schedules"`
	// Duration is how long each window stays open; default 1m, and values
	// under 1s become 1m.
	Duration watchers.Duration `json:"duration,omitzero"`
	// StartSplay delays the opening of each window by up to this much; at
	// most half of Duration and at most 24h.
	StartSplay watchers.Duration `json:"start_splay,omitzero"`
	// SkipTriggerOnReenter keeps the success transition from firing again
	// when the machine re-enters the watcher's states during an on period
	// that already fired it.
	SkipTriggerOnReenter bool `json:"skip_trigger_on_reenter,omitempty"`
	// Timezone is the IANA time zone (such as "Europe/Berlin" or "UTC") of
	// the schedules that do not name one; default the node's local time.
	Timezone string `json:"timezone,omitempty"`

	specs    []*cron.SpecSchedule // parsed Schedules, set by Validate
	duration time.Duration        // Duration after defaults
	splay    time.Duration        // StartSplay

	now  func() time.Time
	seed uint64 // splay seed, set by Provision
	log  *slog.Logger

	prev        switchState
	triggered   bool      // the success transition fired in this on period
	triggeredAt time.Time // when it fired
}

// switchState is the watcher's state as published (Choria's names).
type switchState int

const (
	unknown switchState = iota
	off
	on
	skipped
)

func (s switchState) String() string {
	return [...]string{"unknown", "off", "on", "skipped"}[s]
}

// State is the type-specific part of the schedule watcher's state event.
type State struct {
	// State is "on" or "off" ("unknown" and "skipped" are never published).
	State string `json:"state"`
}

// Validate checks the properties and parses every schedule once.
func (w *Watcher) Validate() error {
	var errs []error
	w.duration = w.Duration.Std()
	if w.duration < time.Second {
		w.duration = DefaultDuration
	}
	w.splay = w.StartSplay.Std()
	switch {
	case w.splay > w.duration/2:
		errs = append(errs, fmt.Errorf("start_splay: %v is more than half the duration %v", w.splay, w.duration))
	case w.splay > MaxStartSplay:
		errs = append(errs, fmt.Errorf("start_splay: %v is more than the maximum %v", w.splay, MaxStartSplay))
	}
	var loc *time.Location
	if w.Timezone != "" {
		l, err := time.LoadLocation(w.Timezone)
		if err != nil {
			errs = append(errs, fmt.Errorf("timezone: %w", err))
		}
		loc = l
	}
	if len(w.Schedules) == 0 {
		errs = append(errs, errors.New("schedules: required"))
	}
	w.specs = w.specs[:0]
	for i, s := range w.Schedules {
		spec, err := parseSchedule(s, loc)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedules[%d] %q: %w", i, s, err))
			continue
		}
		w.specs = append(w.specs, spec)
	}
	return errors.Join(errs...)
}

// parseSchedule parses one schedule; loc, when not nil, is its zone unless
// it names one itself.
func parseSchedule(s string, loc *time.Location) (*cron.SpecSchedule, error) {
	s = strings.TrimSpace(s)
	hasZone := strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=")
	if hasZone && !strings.Contains(s, " ") {
		return nil, errors.New("a time zone prefix needs a schedule after it")
	}
	sched, err := parser.Parse(s)
	if err != nil {
		return nil, err
	}
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, errors.New("@every is not supported: windows need fixed start times; use a cron expression")
	}
	if loc != nil && !hasZone {
		spec.Location = loc
	}
	// Next gives up after five years; a date that never comes (Feb 30)
	// would never open a window.
	if spec.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, errors.New("never fires")
	}
	return spec, nil
}

// Provision derives the splay seed from the node, machine and watcher.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	h := fnv.New64a()
	for _, s := range []string{d.Identity, d.Machine, d.Watcher} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	w.seed = h.Sum64()
	return nil
}

// StateChanged remembers that the watcher was outside its states, so the
// next check reports the current state again.
func (w *Watcher) StateChanged(active bool) {
	if !active {
		w.prev = skipped
	}
}

// Check computes the switch from the clock and reports an edge.
func (w *Watcher) Check(context.Context) (watchers.Result, error) {
	t := w.now()
	until, next := w.evaluate(t)
	cur := off
	if !until.IsZero() {
		cur = on
	}
	prev := w.prev
	w.prev = cur
	res := watchers.Result{Outcome: watchers.Unchanged, State: State{State: cur.String()}, After: next.Sub(t)}
	switch {
	case cur == off:
		w.triggered = false
		if prev == on || prev == skipped {
			res.Outcome = watchers.Failure
		}
	case prev == on:
	case prev == skipped && w.SkipTriggerOnReenter && w.triggered && !w.offBetween(w.triggeredAt, t):
		w.log.Debug("schedule on again after re-entering; skipping the success transition it already fired")
	default:
		w.triggered, w.triggeredAt = true, t
		res.Outcome = watchers.Success
	}
	return res, nil
}

var (
	_ watchers.Watcher       = (*Watcher)(nil)
	_ watchers.Validator     = (*Watcher)(nil)
	_ watchers.Provisioner   = (*Watcher)(nil)
	_ watchers.StateObserver = (*Watcher)(nil)
)
