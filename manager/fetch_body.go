package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// attempt bounds one download attempt with an overall deadline, an idle
// timer and a minimum average rate; each cancels the attempt's context
// with a cause that says why. It also paces progress reports.
type attempt struct {
	cancel   context.CancelCauseFunc
	deadline *time.Timer
	idle     *time.Timer
	idleFor  time.Duration
	rate     *time.Timer // nil until the response arrived, or without a minimum rate
	minRate  int64       // bytes per second after grace, from the response; 0: none
	grace    time.Duration
	// progress paces the reports: it starts when the response arrives
	// (a download queued on a busy server reports nothing while it
	// waits, so a fleet waiting for one server does not rewrite its
	// status documents and events while it waits); nil until then and
	// without a reporter.
	progress      *time.Timer
	progressDelay time.Duration
	progressEvery time.Duration
	prog          ProgressReporter
	name          string

	start time.Time // when the response arrived (the rate's clock); guarded by pmu
	// waitingSince is when the current wait for data began (unix ns),
	// 0 while none.
	waitingSince atomic.Int64
	received     atomic.Int64 // bytes delivered so far
	total        atomic.Int64 // the announced length, -1 while unknown
	over         atomic.Bool  // end ran: timers must not re-arm

	pmu      sync.Mutex // guards the rate and progress timers; orders progress reports (the last is end's)
	reported bool       // progress was reported at least once; guarded by pmu
}

// rateCheckEvery is how often a download's average rate is checked once
// the grace period has passed.
const rateCheckEvery = time.Second

// startAttempt starts the clocks of one attempt at fetching m. The idle
// timer runs until disarm: while a request waits for its response and,
// later, while a Read waits for data. The minimum rate applies to the
// body, from when the response arrives (responded): a server slow to
// answer is the idle timer's (a fleet's downloads queued on one server
// wait for their turn, then come fast), one slow to send is the rate's.
func (f *Fetcher) startAttempt(ctx context.Context, m spec.Machine) (context.Context, *attempt) {
	actx, cancel := context.WithCancelCause(ctx)
	timeout, idle := f.attemptTimeout(m), f.cfg.IdleTimeout
	a := &attempt{cancel: cancel, idleFor: idle, prog: f.cfg.Progress, name: m.Name, minRate: max(f.cfg.MinRate, 0), grace: f.cfg.RateGrace,
		progressDelay: f.cfg.ProgressDelay, progressEvery: f.cfg.ProgressInterval}
	a.total.Store(-1)
	if m.Size > 0 {
		a.total.Store(m.Size)
	}
	a.deadline = time.AfterFunc(timeout, func() {
		cancel(&transientError{err: fmt.Errorf("download did not finish within %s", timeout)})
	})
	a.waitingSince.Store(time.Now().UnixNano()) // for the response
	// The callback reads a.idle: set it under pmu, which the callback
	// takes first.
	a.pmu.Lock()
	a.idle = time.AfterFunc(idle, a.checkIdle)
	a.pmu.Unlock()
	return actx, a
}

// checkRate cancels the attempt when it received fewer bytes than minRate
// per second since the grace period ended, else checks again later.
func (a *attempt) checkRate(minRate int64, grace, every time.Duration) {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	if a.over.Load() {
		return
	}
	elapsed := time.Since(a.start)
	got := a.received.Load()
	if want := int64(float64(minRate) * (elapsed - grace).Seconds()); got < want {
		a.cancel(&transientError{err: fmt.Errorf("%w: %d bytes in %s, below the minimum average of %d bytes/s (after a %s grace)",
			ErrDownloadTooSlow, got, elapsed.Round(time.Millisecond), minRate, grace)})
		return
	}
	a.rate.Reset(every)
}

// reportProgress tells the reporter how far the download is, then again
// after every.
func (a *attempt) reportProgress(every time.Duration) {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	if a.over.Load() {
		return
	}
	a.reported = true
	a.prog.ReportProgress(a.name, a.received.Load(), a.total.Load())
	a.progress.Reset(every)
}

// arm and disarm bracket a wait for data (the response, then each Read):
// the idle timer fails the attempt once one lasts idleFor. They only note
// the time: the timer runs from the start to the end of the attempt and
// looks at the note when it fires, so a Read costs no timer operation
// (a reset timer costs the runtime a walk of every timer of the process
// when it comes due, and a large archive is thousands of Reads).
func (a *attempt) arm()    { a.waitingSince.Store(time.Now().UnixNano()) }
func (a *attempt) disarm() { a.waitingSince.Store(0) }

// checkIdle is the idle timer: it cancels the attempt when a wait for data
// has lasted idleFor, else fires again when the current wait (or a new
// one) would.
func (a *attempt) checkIdle() {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	if a.over.Load() {
		return
	}
	next := a.idleFor
	if since := a.waitingSince.Load(); since != 0 {
		waited := time.Since(time.Unix(0, since))
		if waited >= a.idleFor {
			a.cancel(&transientError{err: fmt.Errorf("%w: no data for %s", ErrDownloadStalled, a.idleFor)})
			return
		}
		next = a.idleFor - waited
	}
	a.idle.Reset(next)
}

// responded says the response arrived (headers, or the object's
// consumer): the idle timer stops until the body is read and the
// minimum rate's grace starts.
func (a *attempt) responded() {
	a.disarm()
	a.pmu.Lock()
	defer a.pmu.Unlock()
	if a.over.Load() {
		return
	}
	// The timers' callbacks read their own fields: they are set under
	// pmu, which the callbacks take first.
	if a.prog != nil && a.progress == nil {
		every := a.progressEvery
		a.progress = time.AfterFunc(a.progressDelay, func() { a.reportProgress(every) })
	}
	if a.minRate <= 0 {
		return
	}
	a.start = time.Now()
	minRate, grace := a.minRate, a.grace
	every := min(rateCheckEvery, max(grace/10, time.Millisecond))
	a.rate = time.AfterFunc(grace, func() { a.checkRate(minRate, grace, every) })
}

// end stops the clocks and releases the attempt's context; a download
// whose progress was reported gets a last report.
func (a *attempt) end() {
	if a.over.Swap(true) {
		return
	}
	a.idle.Stop()
	a.deadline.Stop()
	a.cancel(errAttemptOver)
	a.pmu.Lock()
	defer a.pmu.Unlock()
	if a.rate != nil {
		a.rate.Stop()
	}
	if a.progress != nil {
		a.progress.Stop()
	}
	if a.reported {
		a.prog.ReportProgress(a.name, a.received.Load(), a.total.Load())
	}
}

// errAttemptOver cancels an attempt that ended normally.
var errAttemptOver = errors.New("download attempt over")

// failure turns err, seen during the attempt whose context is actx, into
// the error to report: the attempt's cause when it was cancelled (a stall,
// the deadline, or the caller's cancellation), else a transient network
// error while doing what.
func (a *attempt) failure(actx context.Context, err error, what string) error {
	if cause := contextFailure(actx); cause != nil {
		return cause
	}
	return &transientError{err: fmt.Errorf("%s: %w", what, stripURL(err))}
}

// contextFailure returns why actx was cancelled, or nil if it was not.
func contextFailure(actx context.Context) error {
	if actx.Err() == nil {
		return nil
	}
	return context.Cause(actx)
}

// stripURL removes the url.Error wrapper of an HTTP client error: its
// message repeats the URL, query included.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// transientError marks a failure worth retrying: a network error, a stall,
// a missed deadline or an HTTP 5xx.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// isTransient reports whether err is worth retrying.
func isTransient(err error) bool {
	_, ok := errors.AsType[*transientError](err)
	return ok
}

// tooLargeError is a download longer than allowed. It wraps
// packer.ErrArchiveTooLarge.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }
func (e *tooLargeError) Unwrap() error { return packer.ErrArchiveTooLarge }

// sizeCap is the most bytes a download may deliver and how to name that
// bound in messages.
type sizeCap struct {
	limit int64
	what  string
}

// sizeCap returns the bound for m: its declared size, else MaxSize. A
// declared size above MaxSize is refused before any request.
func (f *Fetcher) sizeCap(m spec.Machine) (sizeCap, error) {
	switch {
	case m.Size > f.cfg.MaxSize:
		return sizeCap{}, &tooLargeError{msg: fmt.Sprintf("declared size %d exceeds this node's limit of %d bytes", m.Size, f.cfg.MaxSize)}
	case m.Size > 0:
		return sizeCap{limit: m.Size, what: fmt.Sprintf("declared size %d", m.Size)}, nil
	}
	return sizeCap{limit: f.cfg.MaxSize, what: fmt.Sprintf("size limit %d", f.cfg.MaxSize)}, nil
}

// check refuses a length announced by the server (Content-Length, object
// info) that is over the cap.
func (c sizeCap) check(announced int64, by string) error {
	if announced > c.limit {
		return &tooLargeError{msg: fmt.Sprintf("archive exceeds %s (%s is %d)", c.what, by, announced)}
	}
	return nil
}

// body is a download's stream: it cuts it off one byte past the cap,
// watches each Read with the idle timer and reports why the attempt was
// cancelled instead of a bare "context canceled".
type body struct {
	r     io.Reader
	c     io.Closer
	att   *attempt
	limit sizeCap
	n     int64
	from  string
	cause func() error
}

func (b *body) Read(p []byte) (int, error) {
	if b.n >= b.limit.limit {
		return b.probe()
	}
	if rest := b.limit.limit - b.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	b.att.arm()
	defer b.att.disarm()
	for {
		n, err := b.r.Read(p)
		b.n += int64(n)
		b.att.received.Store(b.n)
		switch {
		case err != nil:
			// A cancelled attempt can surface as a plain EOF when the
			// connection is torn down: never let it pass as the end.
			if cause := b.cause(); cause != nil {
				return n, cause
			}
			if !errors.Is(err, io.EOF) {
				return n, b.readError(err)
			}
		case n == 0:
			// A reader that timed out internally (the object store's)
			// returns nothing; the idle timer decides when to give up.
			if cause := b.cause(); cause != nil {
				return 0, cause
			}
			continue
		}
		return n, err
	}
}

// probe reads past the cap: any byte there means the archive is too long.
func (b *body) probe() (int, error) {
	var one [1]byte
	b.att.arm()
	defer b.att.disarm()
	for {
		n, err := b.r.Read(one[:])
		switch {
		case n > 0:
			return 0, &tooLargeError{msg: "archive exceeds " + b.limit.what}
		case err != nil && !errors.Is(err, io.EOF):
			return 0, b.readError(err)
		case err != nil:
			if cause := b.cause(); cause != nil {
				return 0, cause
			}
			return 0, io.EOF
		}
		if cause := b.cause(); cause != nil {
			return 0, cause
		}
	}
}

func (b *body) readError(err error) error {
	if cause := b.cause(); cause != nil {
		return cause
	}
	return &transientError{err: fmt.Errorf("read from %s: %w", b.from, stripURL(err))}
}

// Close ends the attempt and closes the underlying stream.
func (b *body) Close() error {
	b.att.end()
	return b.c.Close()
}

var (
	_ io.ReadCloser = (*body)(nil)
	_ error         = (*transientError)(nil)
	_ error         = (*tooLargeError)(nil)
)
