package machineswatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/watchers"
)

// supersedePoll is how often Stream looks for a newer spec in the data
// item while a check runs; between checks it does not look (nothing would
// be cancelled), so an idle node has no timer of it to wake for.
const supersedePoll = 250 * time.Millisecond

// errSuperseded cancels a check whose spec was replaced by a newer one.
var errSuperseded = errors.New("a newer spec arrived; this pass stops and the next one applies it")

// inflight is the check in progress: the spec it works on and how to stop
// it.
type inflight struct {
	value  any // the data item's value the check read
	serial uint64
	format packer.Format
	digest string
	cancel context.CancelCauseFunc
}

// checks tracks the running check for the Stream goroutine.
type checks struct {
	mu        sync.Mutex
	cur       *inflight
	lastSeen  any       // the last newer value looked at, not to inspect it again
	lastNudge time.Time // when a nudge last triggered a check
	fleetWait bool      // the last pass held an entry on what the fleet reports

	// Stream's wake-ups, buffered (1) and made on first use (wake):
	started chan struct{} // a check started: poll the data item while it runs
	ignored chan struct{} // a nudge was ignored and counted, not logged: log the summary when due
}

// wake returns the channels that wake Stream (see checks.started and
// checks.ignored), making them on first use; c.mu must be held.
func (c *checks) wake() (started, ignored chan struct{}) {
	if c.started == nil {
		c.started, c.ignored = make(chan struct{}, 1), make(chan struct{}, 1)
	}
	return c.started, c.ignored
}

// wakes returns the channels that wake Stream.
func (c *checks) wakes() (started, ignored <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wake()
}

// signal sends on a wake-up channel without waiting (one pending is enough).
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// running reports whether a check is in progress.
func (c *checks) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// countedIgnored tells Stream that a nudge was ignored without a log line,
// so that it logs the summary once manager.NudgeLogInterval has passed.
func (c *checks) countedIgnored() {
	c.mu.Lock()
	_, ignored := c.wake()
	c.mu.Unlock()
	signal(ignored)
}

// setFleetWait records whether the last pass held an entry on what the
// fleet reports (manager.PassReport.FleetWait).
func (c *checks) setFleetWait(wait bool) {
	c.mu.Lock()
	c.fleetWait = wait
	c.mu.Unlock()
}

// wantsFleet reports whether a change of the fleet's reports should run a
// pass: the last pass waited on them, or a pass runs now (it may have
// read the fleet before the change).
func (c *checks) wantsFleet() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fleetWait || c.cur != nil
}

// start records the check of value and returns its context.
func (c *checks) start(ctx context.Context, value any) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	in := &inflight{value: value, cancel: cancel}
	if env, err := envelopeBytes(value); err == nil {
		if o, err := packer.Inspect(env); err == nil {
			in.serial, in.format, in.digest = o.Spec.Serial, o.Format, o.Digest
		}
	}
	c.mu.Lock()
	c.cur, c.lastSeen = in, nil
	started, _ := c.wake()
	c.mu.Unlock()
	signal(started)
	return cctx, func() {
		c.mu.Lock()
		c.cur = nil
		c.mu.Unlock()
		cancel(nil)
	}
}

// supersede cancels the running check when value holds a newer spec than
// the one it works on: a higher serial, or another v1 spec (v1 specs have
// none). The claim is not verified here (the next check does that): the
// cost of a false claim is one cancelled pass, and whoever can write the
// spec key can stop passes anyway. An older or equal serial (a replay, an
// equivocation) never cancels the pass of a newer spec.
func (c *checks) supersede(value any) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.cur
	if cur == nil || reflect.DeepEqual(value, cur.value) || (c.lastSeen != nil && reflect.DeepEqual(value, c.lastSeen)) {
		return false
	}
	c.lastSeen = value
	env, err := envelopeBytes(value)
	if err != nil {
		return false
	}
	o, err := packer.Inspect(env)
	if err != nil {
		return false
	}
	newer := o.Spec.Serial > cur.serial ||
		(o.Format == packer.FormatV1 && cur.format == packer.FormatV1 && o.Digest != cur.digest)
	if newer {
		cur.cancel(errSuperseded)
	}
	return newer
}

// nudged reports whether a nudge may trigger a check now (at most one per
// manager.NudgeMinInterval).
func (c *checks) nudged(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastNudge) < manager.NudgeMinInterval {
		return false
	}
	c.lastNudge = now
	return true
}

// Stream runs beside the checks: it cancels a running check when the data
// item gets a newer spec (so a download, a governor wait or a matcher of
// a replaced spec never holds up the new one; it looks every
// supersedePoll while a check runs, and not at all between checks), it
// triggers a check when a reconcile nudge for this node arrives on
// manager.NudgeSubject, and, while a rollout holds an entry on what the
// fleet reports, when a node's report changes (the Fleet's
// manager.FleetNotifier), at most once per manager.FleetRecheckMin. An
// idle node's Stream holds no timer: it sleeps until one of these.
func (w *Watcher) Stream(ctx context.Context, trigger func()) error {
	if w.conn != nil {
		sub, err := w.conn.Subscribe(manager.NudgeSubject, func(m *nats.Msg) { w.onNudge(m, trigger) })
		if err != nil {
			return fmt.Errorf("subscribe to reconcile nudges on %s: %w", manager.NudgeSubject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		plans, err := w.conn.Subscribe(manager.PlanSubject, func(m *nats.Msg) { w.onPlan(ctx, m) })
		if err != nil {
			return fmt.Errorf("subscribe to plan requests on %s: %w", manager.PlanSubject, err)
		}
		defer func() { _ = plans.Unsubscribe() }()
	}
	var fleet <-chan struct{}
	if n, ok := w.Fleet.(manager.FleetNotifier); ok {
		fleet = n.Changes()
	}
	paced := newPacer(manager.FleetRecheckMin)
	defer paced.stop()
	started, ignored := w.checks.wakes()
	// poll ticks while a check runs; summary fires once ignored nudges
	// were counted and the interval of their log lines has passed. Both
	// are nil (never ready) when there is nothing to do.
	var poll, summary <-chan time.Time
	var pollTicker *time.Ticker
	var summaryTimer *time.Timer
	stopPoll := func() {
		if pollTicker != nil {
			pollTicker.Stop()
			pollTicker, poll = nil, nil
		}
	}
	defer stopPoll()
	defer func() {
		if summaryTimer != nil {
			summaryTimer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-started:
			if pollTicker == nil {
				pollTicker = time.NewTicker(supersedePoll)
				poll = pollTicker.C
			}
		case <-poll:
			v, ok := w.data.Get(w.DataItem)
			if ok && w.checks.supersede(v) {
				w.log.Info("a newer spec arrived during a reconcile pass; stopping that pass to apply the new spec")
			}
			if !w.checks.running() {
				stopPoll()
			}
		case <-ignored:
			if summaryTimer == nil {
				summaryTimer = time.NewTimer(manager.NudgeLogInterval)
				summary = summaryTimer.C
			}
		case now := <-summary:
			summaryTimer, summary = nil, nil
			if n, why := w.ignored.Summary(now); n > 0 {
				w.log.Warn("ignored more reconcile nudges", "count", n, "within", manager.NudgeLogInterval, "last_error", why)
			}
		case <-fleet:
			if w.checks.wantsFleet() && paced.ready(time.Now()) {
				trigger()
			}
		case <-paced.due():
			paced.stop()
			if w.checks.wantsFleet() && paced.ready(time.Now()) {
				trigger()
			}
		}
	}
}

// pacer lets an event through at most once per interval; an event within
// the interval is deferred to its end (due), not dropped.
type pacer struct {
	every time.Duration
	last  time.Time
	timer *time.Timer
	timeC <-chan time.Time // nil while nothing is deferred
}

func newPacer(every time.Duration) *pacer { return &pacer{every: every} }

// ready reports whether an event at now may go through; if not, it is
// deferred: due fires when it may.
func (p *pacer) ready(now time.Time) bool {
	if wait := p.last.Add(p.every).Sub(now); wait > 0 {
		if p.timeC == nil {
			p.timer = time.NewTimer(wait)
			p.timeC = p.timer.C
		}
		return false
	}
	p.last = now
	p.stop()
	return true
}

// due fires when a deferred event may go through.
func (p *pacer) due() <-chan time.Time { return p.timeC }

// stop forgets the deferred event.
func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer, p.timeC = nil, nil
}

// PlanTimeout bounds the answer to one plan request (matchers, the
// fleet's reports).
const PlanTimeout = 10 * time.Second

// onPlan answers one plan request (see manager.PlanSubject) with what a
// pass over the spec would do here.
func (w *Watcher) onPlan(ctx context.Context, m *nats.Msg) {
	re, err := manager.ParsePlanIdentity(m.Header.Get(manager.PlanIdentityHeader))
	if err != nil {
		w.log.Warn("ignoring a malformed plan request", "error", err)
		return
	}
	if (re != nil && !re.MatchString(w.identity)) || m.Reply == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, PlanTimeout)
	defer cancel()
	rep := w.rec.Plan(ctx, m.Data)
	b, err := json.Marshal(rep)
	if err == nil && len(b) > manager.MaxPlanReply {
		b, err = json.Marshal(manager.PlanReply{Identity: rep.Identity, Serial: rep.Serial, Digest: rep.Digest, Format: rep.Format,
			Refused: manager.RejectError, Reason: fmt.Sprintf("the plan is %d bytes, over the %d a reply may hold", len(b), manager.MaxPlanReply), Entries: []manager.PlanEntry{}})
	}
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		w.log.Warn("answer a plan request", "error", err)
		return
	}
	w.log.Info("plan requested over NATS", "serial", rep.Serial, "refused", rep.Refused, "entries", len(rep.Entries))
}

// onNudge handles one reconcile nudge. Ignored ones are logged through
// w.ignored: the first at once, the rest in a summary a minute.
func (w *Watcher) onNudge(m *nats.Msg, trigger func()) {
	if err := manager.CheckNudgeMessage(m.Reply, m.Header); err != nil {
		if w.ignored.Ignore(time.Now(), err) {
			w.log.Warn("ignoring a message on "+manager.NudgeSubject+" that is no reconcile nudge", "error", err)
		} else {
			w.checks.countedIgnored()
		}
		return
	}
	re, err := manager.ParseNudge(m.Data)
	if err != nil {
		if w.ignored.Ignore(time.Now(), err) {
			w.log.Warn("ignoring a malformed reconcile nudge", "error", err)
		} else {
			w.checks.countedIgnored()
		}
		return
	}
	if re != nil && !re.MatchString(w.identity) {
		return
	}
	if !w.checks.nudged(time.Now()) {
		w.log.Debug("reconcile nudge ignored: one was handled less than a second ago")
		return
	}
	w.log.Info("reconcile nudge received; checking the spec now")
	trigger()
	if m.Reply != "" {
		if b, err := json.Marshal(manager.NudgeReply{Identity: w.identity}); err == nil {
			_ = m.Respond(b)
		}
	}
}

var _ watchers.Streamer = (*Watcher)(nil)
