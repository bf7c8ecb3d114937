// Package governor limits how many nodes of a fleet do something at once
// (download an archive, run a command) with Choria-style governors on
// JetStream: a governor is a stream whose message limit is the number of
// slots. Agents take and release slots ([Governors.Acquire]); operators
// create, list, reset and remove governors ([Add], [List], [Reset],
// [Remove]).
package governor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/spec"
)

// A governor limits how many nodes of a fleet do something at once, here
// downloading an archive. It follows Choria's design on JetStream: the
// governor NAME is the stream MMS_GOVERNOR_NAME on the subject
// mms.governor.NAME, with MaxMsgs = the limit, DiscardNew and MaxAge = the
// expiry. Taking a slot publishes a message and gets a PubAck; its sequence
// is the lease. When the stream is full the server refuses the message
// (JetStream error 10077) and the taker retries with backoff. Releasing the
// slot deletes the message; a holder that crashes keeps its slot until
// MaxAge expires the message, so the expiry must be longer than the
// longest download.
//
// The names carry an MMS_ / mms. prefix, unlike Choria's GOVERNOR_NAME and
// <collective>.governor.NAME, so mms and Choria governors on the same NATS
// system never share slots by accident. Agents never create governors: an
// operator does, with `mms governor add NAME LIMIT`.
const (
	// StreamPrefix starts every governor stream's name.
	StreamPrefix = "MMS_GOVERNOR_"
	// SubjectPrefix starts every governor stream's subject.
	SubjectPrefix = "mms.governor."
)

// errCodeStoreFailed is JetStream's error code for a message the stream
// refused to store, "maximum messages exceeded" for a full governor.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// DefaultWait bounds how long Acquire waits for a slot. A slot
// held (or taken again and again) by anyone who can publish on the
// governor's subject must not stall a node forever: after this wait the
// entry fails with the reason and is retried later with backoff, and a
// newer spec cancels the wait at once.
const DefaultWait = 5 * time.Minute

// ErrDenied means this node's NATS user may not use the governor:
// publishing to its subject (or asking JetStream about its stream) is not
// permitted. It is a configuration error, never "the governor is full".
var ErrDenied = errors.New("governor not permitted")

// Governor timing.
const (
	governorAttemptTimeout = 2 * time.Second
	governorRetryFirst     = 500 * time.Millisecond
	governorRetryMax       = 5 * time.Second
	governorReleaseTimeout = 10 * time.Second
	governorLogEvery       = 30 * time.Second
)

// ErrNotFound means the named governor's stream does not exist.
var ErrNotFound = errors.New("governor does not exist")

var governorName = regexp.MustCompile(spec.GovernorPattern)

// GovernorStream returns the stream name of governor name.
func Stream(name string) string { return StreamPrefix + name }

// GovernorSubject returns the subject of governor name.
func Subject(name string) string { return SubjectPrefix + name }

// checkGovernorName refuses a name that cannot be a stream name and subject.
func checkGovernorName(name string) error {
	if !governorName.MatchString(name) {
		return fmt.Errorf("governor name %q must match %s", name, spec.GovernorPattern)
	}
	return nil
}

// Governors takes slots of fleet-wide governors for one node. Its Acquire
// method has the signature of manager.Gate. It is safe for concurrent use.
type Governors struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	owner string
	log   *slog.Logger

	attempt, maxWait time.Duration
	retry            backoff.Policy
}

// New returns governors reached over nc. owner names the holder in
// the slot messages (for example "mms_manager@node1"), so an operator
// can see who holds a slot; log may be nil.
func New(nc *nats.Conn, owner string, log *slog.Logger) (*Governors, error) {
	if nc == nil {
		return nil, errors.New("new governors: a NATS connection is required")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("new governors: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Governors{
		nc: nc, js: js, owner: owner, log: log,
		attempt: governorAttemptTimeout, retry: backoff.Policy{First: governorRetryFirst, Max: governorRetryMax},
		maxWait: DefaultWait,
	}, nil
}

// NewGate returns what a governed action waits on: the Acquire of the
// governors reached over nc (see [New]), or, on a node without NATS (nc
// nil), a gate that refuses every governor with an error saying so: the
// action fails rather than ignore the fleet-wide limit. Its signature is
// that of manager.Gate and the exec watcher's Gate.
func NewGate(nc *nats.Conn, owner string, log *slog.Logger) (func(ctx context.Context, name string) (release func(), err error), error) {
	if nc == nil {
		return unreachable, nil
	}
	g, err := New(nc, owner, log)
	if err != nil {
		return nil, err
	}
	return g.Acquire, nil
}

// unreachable is the gate of a node without NATS.
func unreachable(_ context.Context, name string) (func(), error) {
	return nil, fmt.Errorf("governor %q: the agent has no NATS connection to reach it", name)
}

// Acquire takes a slot of the named governor, waiting (with backoff) while
// all its slots are taken, until ctx is done or [DefaultWait] has
// passed. release frees the slot; it must be called once (later calls do
// nothing) and works after ctx is done. A governor that does not exist is
// an error wrapping [ErrNotFound] that says how to create it; one this
// node's NATS user may not use is an error wrapping [ErrDenied]
// (the server's permissions violation), never a wait.
func (g *Governors) Acquire(ctx context.Context, name string) (release func(), err error) {
	if err := checkGovernorName(name); err != nil {
		return nil, err
	}
	stream, subject := Stream(name), Subject(name)
	// One message id for every attempt: a retry of a publish whose ack was
	// lost is deduplicated to the slot it already took, not a second one.
	id := uuid.NewString()
	payload := []byte(g.owner)
	start := time.Now()
	wctx, cancel := context.WithTimeoutCause(ctx, g.maxWait,
		fmt.Errorf("the bound on a governor wait (%s) passed: %w", g.maxWait, context.DeadlineExceeded))
	defer cancel()
	var lastReason string
	var lastInfo time.Time
	for n := 1; ; n++ {
		before := g.nc.LastError()
		actx, acancel := context.WithTimeout(wctx, g.attempt)
		ack, err := g.js.Publish(actx, subject, payload, jetstream.WithMsgID(id), jetstream.WithExpectStream(stream))
		acancel()
		reason := ""
		switch {
		case err == nil:
			g.log.Debug("governor slot taken", "governor", name, "lease", ack.Sequence, "waited", time.Since(start))
			return g.releaser(name, ack.Sequence), nil
		case wctx.Err() != nil:
			return nil, gaveUp(wctx, name, start)
		case g.denied(before, subject):
			return nil, fmt.Errorf("governor %q: %w: this node's NATS user may not publish to %s (%v); grant it, see docs/nats-permissions.md", name, ErrDenied, subject, g.nc.LastError())
		case isGovernorFull(err):
			reason = "all slots taken"
		case errors.Is(err, context.DeadlineExceeded):
			reason = "no answer within " + g.attempt.String()
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			before := g.nc.LastError()
			_, serr := g.js.Stream(wctx, stream)
			switch {
			case errors.Is(serr, jetstream.ErrStreamNotFound):
				return nil, missingGovernor(name)
			case serr != nil && g.deniedAPI(before):
				return nil, fmt.Errorf("governor %q: %w: this node's NATS user may not look up stream %s (%v); grant it, see docs/nats-permissions.md", name, ErrDenied, stream, g.nc.LastError())
			}
			reason = "no stream answered"
		default:
			return nil, fmt.Errorf("governor %q: take a slot: %w", name, err)
		}
		d := g.retry.Jittered(n)
		// Every retry is logged with its reason: at info the first, a
		// change of reason and then every governorLogEvery, the others at
		// debug, so a long wait is visible without a line every second.
		level := slog.LevelDebug
		if n == 1 || reason != lastReason || time.Since(lastInfo) >= governorLogEvery {
			level, lastInfo = slog.LevelInfo, time.Now()
		}
		lastReason = reason
		g.log.Log(ctx, level, "governor slot not taken; retrying", "governor", name, "reason", reason, "attempt", n, "retry_in", d, "waited", time.Since(start).Round(time.Millisecond), "max_wait", g.maxWait)
		if !backoff.Sleep(wctx, d) {
			return nil, gaveUp(wctx, name, start)
		}
	}
}

// gaveUp is the error of a wait for a slot that ended with wctx: the
// caller's cancellation, or the bound on the wait.
func gaveUp(wctx context.Context, name string, start time.Time) error {
	return fmt.Errorf("governor %q: no slot free after %v: %w", name, time.Since(start).Round(time.Millisecond), context.Cause(wctx))
}

// denied reports whether the server refused this connection's publish to
// subject since before was its last error: a permissions violation that
// names the subject. (A denied publish only times out for the publisher;
// the server says why in an asynchronous error.)
func (g *Governors) denied(before error, subject string) bool {
	after := g.nc.LastError()
	return after != nil && after != before && errors.Is(after, nats.ErrPermissionViolation) &&
		strings.Contains(after.Error(), `"`+subject+`"`)
}

// deniedAPI reports whether the server refused a JetStream API request of
// this connection since before.
func (g *Governors) deniedAPI(before error) bool {
	after := g.nc.LastError()
	return after != nil && after != before && errors.Is(after, nats.ErrPermissionViolation) &&
		strings.Contains(after.Error(), `"$JS.API.`)
}

// releaser returns the release func of the lease seq of governor name.
func (g *Governors) releaser(name string, seq uint64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			// The caller's context may be gone; the slot must still be freed.
			ctx, cancel := context.WithTimeout(context.Background(), governorReleaseTimeout)
			defer cancel()
			s, err := g.js.Stream(ctx, Stream(name))
			if err == nil {
				err = s.DeleteMsg(ctx, seq)
			}
			switch {
			case err == nil:
				g.log.Debug("governor slot released", "governor", name, "lease", seq)
			case errors.Is(err, jetstream.ErrMsgNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
				// Expired or reset meanwhile: the slot is free already.
			default:
				g.log.Warn("releasing governor slot failed; it frees when the governor's expiry passes",
					"governor", name, "lease", seq, "error", err)
			}
		})
	}
}

// isGovernorFull reports whether err is a stream refusing a message
// because it is at its limit.
func isGovernorFull(err error) bool {
	apiErr, ok := errors.AsType[*jetstream.APIError](err)
	return ok && apiErr.ErrorCode == errCodeStoreFailed
}

// missingGovernor is the error for a governor whose stream is missing.
func missingGovernor(name string) error { return &noGovernorError{name: name} }

// noGovernorError says which governor is missing and how to create it; it
// matches [ErrNotFound].
type noGovernorError struct{ name string }

func (e *noGovernorError) Error() string {
	return fmt.Sprintf("governor %q does not exist: create it with mms governor add %s LIMIT", e.name, e.name)
}

func (e *noGovernorError) Is(target error) bool { return target == ErrNotFound }
