package manager

import (
	"context"
	"fmt"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/spec"
)

// retry runs try until it succeeds, fails for a reason that is not
// transient, or the retries are used up, sleeping an exponentially growing,
// jittered delay between attempts (backoff.Policy from Backoff up to
// maxBackoff).
func (f *Fetcher) retry(ctx context.Context, m spec.Machine, try func() error) error {
	delays := backoff.Policy{First: f.cfg.Backoff, Max: maxBackoff}
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
		wait := delays.Jittered(n)
		f.log.Warn("archive download failed, retrying", "managed", m.Name, "source", redactSource(m.Source),
			"attempt", n, "retry_in", wait, "error", err)
		if !backoff.Sleep(ctx, wait) {
			return fmt.Errorf("%w (retry abandoned: %w)", err, context.Cause(ctx))
		}
	}
}
