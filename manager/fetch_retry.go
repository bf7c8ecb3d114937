package manager

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mms-io/mms/spec"
)

// retry runs try until it succeeds, fails for a reason that is not
// transient, or the retries are used up, sleeping an exponentially growing,
// jittered delay between attempts.
func (f *Fetcher) retry(ctx context.Context, m spec.Machine, try func() error) error {
	delay := f.cfg.Backoff
	for n := 1; ; n++ {
		err := try()
		if err == nil {
			return nil
		}
		if !isTransient(err) || ctx.Err() != nil {
			return err
		}
		if n > f.cfg.Retries {
			return fmt.Errorf("%w (gave up after %d attempts)", err, n)
		}
		wait := retryJitter(delay)
		f.log.Warn("archive download failed, retrying", "managed", m.Name, "source", redactSource(m.Source),
			"attempt", n, "retry_in", wait, "error", err)
		if sleep(ctx, wait) != nil {
			return fmt.Errorf("%w (retry abandoned: %w)", err, context.Cause(ctx))
		}
		delay = min(2*delay, maxBackoff)
	}
}

// retryJitter returns a random duration in [d/2, d] ("equal jitter"), so nodes
// that failed together do not retry together.
func retryJitter(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
