package main

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// jsAttempt bounds one try of a JetStream API request that retryJS
// repeats. A request made while a cluster elects a stream's leader (its
// server just died) is never answered; the same request made a moment
// later is, at once.
const jsAttempt = 2 * time.Second

// retryJS runs f with a context bounded by jsAttempt until it succeeds,
// fails with an answer (any error but a timeout), or ctx ends; it returns
// f's last error.
func retryJS(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, jsAttempt)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
}

// bindKV binds bucket, trying again while a leader is elected.
func bindKV(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := retryJS(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.KeyValue(ctx, bucket)
		return err
	})
	return kv, err
}
