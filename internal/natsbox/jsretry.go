package natsbox

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JSAttempt bounds one try of a JetStream API request that [RetryJS]
// repeats. A request made while a cluster elects a stream's leader (its
// server just died) is never answered; the same request made a moment
// later is, at once.
const JSAttempt = 2 * time.Second

// RetryJS runs f with a context bounded by [JSAttempt] until it succeeds,
// fails with an answer (any error but a timeout), or ctx ends; it returns
// f's last error.
func RetryJS(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, JSAttempt)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
}

// BindKV binds bucket, trying again while a leader is elected.
func BindKV(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := RetryJS(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.KeyValue(ctx, bucket)
		return err
	})
	return kv, err
}
