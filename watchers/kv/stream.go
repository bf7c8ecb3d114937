package kvwatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/internal/kvwatch"
)

// Stream follows the key until ctx is done. In watch mode it keeps a KV
// watch on the key (see the package documentation for how it recovers) and
// calls trigger whenever it has found something new. In poll mode it only
// calls trigger after the NATS connection reconnects. It returns nil when
// ctx is done: failures are retried inside with backoff and reported by the
// next check.
func (w *Watcher) Stream(ctx context.Context, trigger func()) error {
	if w.mode == ModePoll && w.onReconnect == nil {
		return nil // nothing to follow between checks
	}
	wake := make(chan struct{}, 1)
	if w.onReconnect != nil {
		remove := w.onReconnect(func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		defer remove()
	}
	if w.mode == ModePoll {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
				trigger()
			}
		}
	}
	s := &stream{w: w, log: w.log, trigger: trigger, reconnect: wake}
	return s.run(ctx)
}

// stream is one run of watch mode's Stream; only its goroutine touches it.
type stream struct {
	w         *Watcher
	log       *slog.Logger
	trigger   func()
	reconnect chan struct{}

	kv          jetstream.KeyValue // nil until bound, and after the bucket vanished
	kw          jetstream.KeyWatcher
	stopWatch   context.CancelFunc
	initial     bool   // the current watch has not yet sent its caught-up marker
	resumed     bool   // the current watch started after a known revision
	gotEntry    bool   // the current watch delivered an entry
	seen        uint64 // highest revision recorded since the bucket was bound
	known       condition
	suspectRev  uint64 // a read found this lower revision once; a second read confirms it
	suspectGone bool   // a read found the present key gone once; a second read confirms it
}

// run is watch mode's loop.
func (s *stream) run(ctx context.Context) error {
	resync := time.NewTicker(s.w.resync)
	defer resync.Stop()
	defer s.drop()
	failures := 0
	for {
		if err := s.ensureWatch(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			retry := s.retryDelay(failures)
			s.log.Debug("kv watch not established; retrying", "error", err, "retry_in", retry)
			if !s.wait(ctx, retry) {
				return nil
			}
			continue
		}
		failures = 0
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-s.kw.Updates():
			if !ok {
				s.log.Info("kv watch ended; re-creating it", "resume_after", s.seen)
				s.drop()
				continue
			}
			s.entry(e)
		case <-s.reconnect:
			s.log.Debug("nats reconnected; re-creating the kv watch", "resume_after", s.seen)
			s.drop()
			s.read(ctx)
		case <-resync.C:
			if s.read(ctx) {
				s.log.Info("a periodic read found an entry the kv watch did not deliver; re-creating it", "revision", s.seen)
				s.drop()
			}
		}
	}
}

// retryDelay is how long the stream waits before its next try after
// failures failures in a row: doubling from retryFirst up to retryMax (or
// the resync interval when shorter), each delay drawn at random from its
// upper half. The randomness matters for a fleet: the agents that lost
// their watches together (a server restart, or one that dropped a backlog
// of JetStream API requests, which it does all at once when its queue
// reaches its limit) must not all try again in the same instant.
func (s *stream) retryDelay(failures int) time.Duration {
	return backoff.Policy{First: retryFirst, Max: min(retryMax, s.w.resync)}.Jittered(failures)
}

// wait sleeps d, returning early (true) on a reconnect and with false when
// ctx is done.
func (s *stream) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-s.reconnect:
		return true
	}
}

// ensureWatch binds the bucket and creates the watch when there is none.
func (s *stream) ensureWatch(ctx context.Context) error {
	if s.kw != nil {
		return nil
	}
	if s.kv == nil {
		bctx, cancel := context.WithTimeout(ctx, opTimeout)
		kv, err := s.w.js.KeyValue(bctx, s.w.Bucket)
		cancel()
		if err != nil {
			return s.failed(ctx, fmt.Errorf("open bucket %s: %w", s.w.Bucket, err))
		}
		s.kv = kv
		// A bucket bound again may be a new one whose revisions restarted.
		s.seen, s.suspectRev, s.suspectGone = 0, 0, false
	}
	var opts []jetstream.WatchOpt
	if s.seen > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(s.seen+1))
	}
	// The watch lives until its context is cancelled: nats.go then
	// unsubscribes and deletes the consumer in its own goroutine, so
	// stopping a watch never blocks this loop (Stop can take seconds when
	// the server is gone).
	wctx, cancel := context.WithCancel(ctx)
	kw, err := s.kv.Watch(wctx, s.w.Key, opts...)
	if err != nil {
		cancel()
		return s.failed(ctx, fmt.Errorf("watch %s/%s: %w", s.w.Bucket, s.w.Key, err))
	}
	s.kw, s.stopWatch = kw, cancel
	s.initial, s.resumed, s.gotEntry = true, len(opts) > 0, false
	s.ok()
	return nil
}

// drop stops the current watch, if any, without waiting for the server.
func (s *stream) drop() {
	if s.kw == nil {
		return
	}
	s.stopWatch()
	kvwatch.Discard(s.kw) // nats.go's callback may be waiting on a full channel
	s.kw, s.stopWatch = nil, nil
}

// entry records what the watch delivered.
func (s *stream) entry(e jetstream.KeyValueEntry) {
	if e == nil { // caught up with the values present at the start
		if s.initial && !s.resumed && !s.gotEntry && s.known != condMissing {
			s.record(notFound(s.known))
		}
		s.initial = false
		return
	}
	s.gotEntry = true
	if e.Revision() <= s.seen {
		return // already known from a read
	}
	s.seen = e.Revision()
	s.record(entryObservation(e))
}

// read gets the key directly and records what the watch missed. It reports
// whether it found something new, in which case the watch cannot be
// trusted. A read that goes backwards (an older revision, or the key gone
// while the watch says it is there) may come from a replica that lags, so
// it counts only when the next read says the same.
func (s *stream) read(ctx context.Context) bool {
	if s.kv == nil {
		return false // ensureWatch binds, and reports, first
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	e, err := s.kv.Get(rctx, s.w.Key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		err = s.w.readError(rctx, err)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		s.ok()
		s.suspectRev = 0
		if s.known != condPresent {
			s.suspectGone = false
			return false
		}
		if !s.suspectGone {
			s.suspectGone = true
			return false
		}
		s.suspectGone = false
		s.record(notFound(s.known))
		return true
	case err != nil:
		if ctx.Err() == nil {
			s.failed(ctx, fmt.Errorf("read %s/%s: %w", s.w.Bucket, s.w.Key, err))
		}
		return false
	}
	s.ok()
	s.suspectGone = false
	rev := e.Revision()
	switch {
	case rev == s.seen && s.known == condPresent:
		s.suspectRev = 0
		return false
	case rev < s.seen && s.suspectRev != rev:
		s.suspectRev = rev
		return false
	}
	s.suspectRev = 0
	s.seen = rev
	s.record(entryObservation(e))
	return true
}

// record hands o to Check and asks for a check.
func (s *stream) record(o observation) {
	s.known = o.cond
	s.w.mu.Lock()
	s.w.snap.obs = o
	s.w.mu.Unlock()
	s.trigger()
}

// failed handles a failure to bind, watch or read: a missing bucket is an
// observation (and unbinds); anything else becomes the stream's error,
// reported once by the next check. It returns err.
func (s *stream) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	if isNoBucket(err) {
		s.kv = nil
		s.drop()
		s.ok()
		if s.known != condNoBucket {
			s.log.Warn("kv bucket not found; waiting for it", "bucket", s.w.Bucket)
			s.record(noBucket(s.w.Bucket))
		}
		return err
	}
	s.w.mu.Lock()
	repeat := s.w.snap.err != nil && s.w.snap.err.Error() == err.Error()
	s.w.snap.err = err
	if !repeat {
		s.w.snap.errSeq++
	}
	s.w.mu.Unlock()
	if !repeat {
		s.log.Warn("kv watch failed", "error", err)
		s.trigger()
	}
	return err
}

// ok clears the stream's error, and asks for a check when there was one,
// so the error the last check reported (a watch that failed while its
// server was down) clears now, not at the next interval.
func (s *stream) ok() {
	s.w.mu.Lock()
	had := s.w.snap.err != nil
	s.w.snap.err = nil
	s.w.mu.Unlock()
	if had {
		s.trigger()
	}
}
