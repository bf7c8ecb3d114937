package agent

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/mms-io/mms/internal/backoff"
	"github.com/mms-io/mms/watchers"
)

// stream runs the watcher's Stream until ctx is done, restarting it with
// backoff when it fails. A Stream that returns nil before ctx is done has
// nothing more to stream and is not restarted.
func (r *runner) stream(ctx context.Context, s watchers.Streamer) {
	failures := 0
	for {
		started := time.Now()
		err := r.safeStream(ctx, s)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			r.log.Info("watcher stream ended")
			return
		}
		if time.Since(started) >= streamHealthy {
			failures = 0
		}
		failures++
		d := errorBackoff(failures, 0)
		r.log.Warn("watcher stream failed; restarting", "error", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

func (r *runner) safeStream(ctx context.Context, s watchers.Streamer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("watcher stream panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("stream panicked: %v", p)
		}
	}()
	return s.Stream(ctx, r.requestCheck)
}
