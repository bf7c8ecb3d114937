// Package backoff is the one home of retry timing in mms: a capped
// exponential delay, "equal jitter" so nodes that failed together do not
// retry together, and a sleep that ends when its context does.
//
// A well-kept library (cenkalti/backoff) exists, but its jitter spreads a
// delay over [d·(1-f), d·(1+f)] and its backoff is a stateful object; the
// retry loops here count attempts themselves and keep every wait within
// [d/2, d] under a cap, which is three small functions.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential delay: First before the first retry,
// doubled before each further one, never more than Max.
type Policy struct {
	// First is the delay before the first retry (attempt 1).
	First time.Duration
	// Max caps every delay, First included.
	Max time.Duration
}

// Delay returns the delay before retry n (1 for the first; below 1 counts
// as 1): First doubled n-1 times, at most Max. It never overflows, however
// large n is.
func (p Policy) Delay(n int) time.Duration {
	d := min(p.First, p.Max)
	for i := 1; i < n && d > 0 && d < p.Max; i++ {
		if d > p.Max/2 {
			return p.Max
		}
		d *= 2
	}
	return d
}

// Jittered returns [Jitter] of p.Delay(n): a random delay in
// [Delay(n)/2, Delay(n)].
func (p Policy) Jittered(n int) time.Duration { return Jitter(p.Delay(n)) }

// Jitter returns a random duration in [d/2, d] ("equal jitter": half the
// delay fixed, half random). A d of zero or less is returned as it is.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Sleep waits d or until ctx is done, whichever comes first, and reports
// whether d passed (false: ctx is done; its error says why).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
