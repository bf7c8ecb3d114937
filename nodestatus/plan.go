package nodestatus

import "time"

// plan is when the writer writes next.
type plan struct {
	lastAttempt time.Time // last write tried (or skipped for NATS down)
	lastWrite   time.Time // last write that succeeded
	dirty       bool      // a change not yet written
	failed      bool      // the last attempt failed
}

// earliest is when the next attempt may be made: MinInterval after the
// last one, RetryInterval after a failed one.
func (p plan) earliest(minGap, retryGap time.Duration) time.Time {
	if p.lastAttempt.IsZero() {
		return time.Time{}
	}
	if p.failed {
		return p.lastAttempt.Add(retryGap)
	}
	return p.lastAttempt.Add(minGap)
}

// heartbeatDue reports whether a heartbeat write is due at now.
func (p plan) heartbeatDue(now time.Time, heartbeat time.Duration) bool {
	return p.lastWrite.IsZero() || !now.Before(p.lastWrite.Add(heartbeat))
}

// next is when the writer should wake up: the heartbeat, or sooner for a
// pending change, but never before earliest.
func (p plan) next(heartbeat, minGap, retryGap time.Duration) time.Time {
	earliest := p.earliest(minGap, retryGap)
	if p.dirty || p.lastWrite.IsZero() {
		return earliest
	}
	return later(p.lastWrite.Add(heartbeat), earliest)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
