package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	// GovernorStreamPrefix starts every governor stream's name.
	GovernorStreamPrefix = "MMS_GOVERNOR_"
	// GovernorSubjectPrefix starts every governor stream's subject.
	GovernorSubjectPrefix = "mms.governor."
)

// errCodeStoreFailed is JetStream's error code for a message the stream
// refused to store, "maximum messages exceeded" for a full governor.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// Governor timing.
const (
	governorAttemptTimeout = 2 * time.Second
	governorRetryFirst     = 500 * time.Millisecond
	governorRetryMax       = 5 * time.Second
	governorReleaseTimeout = 10 * time.Second
)

// ErrNoGovernor means the named governor's stream does not exist.
var ErrNoGovernor = errors.New("governor does not exist")

var governorName = regexp.MustCompile(spec.GovernorPattern)

// GovernorStream returns the stream name of governor name.
func GovernorStream(name string) string { return GovernorStreamPrefix + name }

// GovernorSubject returns the subject of governor name.
func GovernorSubject(name string) string { return GovernorSubjectPrefix + name }

// checkGovernorName refuses a name that cannot be a stream name and subject.
func checkGovernorName(name string) error {
	if !governorName.MatchString(name) {
		return fmt.Errorf("governor name %q must match %s", name, spec.GovernorPattern)
	}
	return nil
}

// Governors takes slots of fleet-wide governors for one node. Its Acquire
// method is a [Gate]. It is safe for concurrent use.
type Governors struct {
	js    jetstream.JetStream
	owner string
	log   *slog.Logger

	attempt, retryFirst, retryMax time.Duration
}

var _ Gate = (*Governors)(nil).Acquire

// NewGovernors returns governors reached over nc. owner names the holder in
// the slot messages (for example "mms_manager@node1"), so an operator
// can see who holds a slot; log may be nil.
func NewGovernors(nc *nats.Conn, owner string, log *slog.Logger) (*Governors, error) {
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
		js: js, owner: owner, log: log,
		attempt: governorAttemptTimeout, retryFirst: governorRetryFirst, retryMax: governorRetryMax,
	}, nil
}

// Acquire takes a slot of the named governor, waiting (with backoff) while
// all its slots are taken, until ctx is done. release frees the slot; it
// must be called once (later calls do nothing) and works after ctx is done.
// A governor that does not exist is an error wrapping [ErrNoGovernor] that
// says how to create it.
func (g *Governors) Acquire(ctx context.Context, name string) (release func(), err error) {
	if err := checkGovernorName(name); err != nil {
		return nil, err
	}
	stream, subject := GovernorStream(name), GovernorSubject(name)
	// One message id for every attempt: a retry of a publish whose ack was
	// lost is deduplicated to the slot it already took, not a second one.
	id := uuid.NewString()
	payload := []byte(g.owner)
	start := time.Now()
	wait := g.retryFirst
	for {
		actx, cancel := context.WithTimeout(ctx, g.attempt)
		ack, err := g.js.Publish(actx, subject, payload, jetstream.WithMsgID(id), jetstream.WithExpectStream(stream))
		cancel()
		switch {
		case err == nil:
			g.log.Debug("governor slot taken", "governor", name, "lease", ack.Sequence, "waited", time.Since(start))
			return g.releaser(name, ack.Sequence), nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("governor %q: no slot free after %v: %w", name, time.Since(start).Round(time.Millisecond), ctx.Err())
		case isGovernorFull(err), errors.Is(err, context.DeadlineExceeded):
			// Full, or the attempt timed out: wait and try again.
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			if _, serr := g.js.Stream(ctx, stream); errors.Is(serr, jetstream.ErrStreamNotFound) {
				return nil, missingGovernor(name)
			}
		default:
			return nil, fmt.Errorf("governor %q: take a slot: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("governor %q: no slot free after %v: %w", name, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(jitter(wait)):
		}
		wait = min(wait*2, g.retryMax)
	}
}

// releaser returns the release func of the lease seq of governor name.
func (g *Governors) releaser(name string, seq uint64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			// The caller's context may be gone; the slot must still be freed.
			ctx, cancel := context.WithTimeout(context.Background(), governorReleaseTimeout)
			defer cancel()
			s, err := g.js.Stream(ctx, GovernorStream(name))
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
// matches [ErrNoGovernor].
type noGovernorError struct{ name string }

func (e *noGovernorError) Error() string {
	return fmt.Sprintf("governor %q does not exist: create it with mms governor add %s LIMIT", e.name, e.name)
}

func (e *noGovernorError) Is(target error) bool { return target == ErrNoGovernor }

// jitter spreads retries over [d/2, d) so waiting nodes do not retry in
// lock step.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}
