package manager

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/spec"
)

// openObject makes one attempt at fetching a nats://BUCKET/OBJECT source
// from the JetStream object store on the Fetcher's connection, with the
// same size caps, idle timer and deadline as HTTP. Access is governed by
// the connection's NATS permissions, so entries may not name credentials.
func (f *Fetcher) openObject(ctx context.Context, m spec.Machine) (io.ReadCloser, error) {
	if m.Auth != "" || m.Username != "" || m.Password != "" {
		return nil, errors.New("credentials do not apply to nats:// sources (NATS permissions govern them)")
	}
	if f.cfg.Conn == nil {
		return nil, errors.New("nats:// sources need a NATS connection, and this fetcher has none")
	}
	bucket, object, err := spec.SplitObjectSource(m.Source)
	if err != nil {
		return nil, fmt.Errorf("invalid source: %w", err)
	}
	limit, err := f.sizeCap(m)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(f.cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	actx, att := f.startAttempt(ctx, m)
	res, err := f.getObject(actx, att, js, bucket, object, limit)
	if err != nil {
		att.end()
		return nil, err
	}
	if info, err := res.Info(); err == nil {
		att.total.Store(int64(min(info.Size, uint64(limit.limit))))
	}
	att.disarm()
	return &body{r: res, c: res, att: att, limit: limit, from: "object store " + bucket,
		cause: func() error { return contextFailure(actx) }}, nil
}

// getObject looks the object up, checks its size and starts reading it.
func (f *Fetcher) getObject(actx context.Context, att *attempt, js jetstream.JetStream, bucket, object string, limit sizeCap) (jetstream.ObjectResult, error) {
	obs, err := js.ObjectStore(actx, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("object store bucket %q not found", bucket)
	case err != nil:
		return nil, att.failure(actx, err, fmt.Sprintf("open object store bucket %q", bucket))
	}
	info, err := obs.GetInfo(actx, object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, fmt.Errorf("object %q not found in object store bucket %q", object, bucket)
	case err != nil:
		return nil, att.failure(actx, err, fmt.Sprintf("look up object %q in bucket %q", object, bucket))
	}
	if info.Size > uint64(limit.limit) {
		return nil, &tooLargeError{msg: fmt.Sprintf("archive exceeds %s (the object's size is %d)", limit.what, info.Size)}
	}
	res, err := obs.Get(actx, object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, fmt.Errorf("object %q not found in object store bucket %q", object, bucket)
	case err != nil:
		return nil, att.failure(actx, err, fmt.Sprintf("get object %q from bucket %q", object, bucket))
	}
	return res, nil
}
