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
	att.responded()
	return &body{r: res, c: res, att: att, limit: limit, from: "object store " + bucket,
		cause: func() error { return contextFailure(actx) }}, nil
}

// getObject looks the object up, checks its size and starts reading it.
// A fleet fetches a new version all at once from one server, and every
// JetStream API request of every node queues on it: a download costs the
// two requests of the get (the object's info, its ordered consumer), and
// the bucket is opened once per Fetcher, not once per download.
func (f *Fetcher) getObject(actx context.Context, att *attempt, js jetstream.JetStream, bucket, object string, limit sizeCap) (jetstream.ObjectResult, error) {
	obs, err := f.objectStore(actx, js, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("object store bucket %q not found", bucket)
	case err != nil:
		return nil, att.failure(actx, err, fmt.Sprintf("open object store bucket %q", bucket))
	}
	res, err := obs.Get(actx, object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, fmt.Errorf("object %q not found in object store bucket %q", object, bucket)
	case err != nil:
		f.forgetStore(bucket) // deleted or recreated: open it again next time
		return nil, att.failure(actx, err, fmt.Sprintf("get object %q from bucket %q", object, bucket))
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		return nil, att.failure(actx, err, fmt.Sprintf("look up object %q in bucket %q", object, bucket))
	}
	if info.Size > uint64(limit.limit) {
		_ = res.Close()
		return nil, &tooLargeError{msg: fmt.Sprintf("archive exceeds %s (the object's size is %d)", limit.what, info.Size)}
	}
	return res, nil
}

// objectStore returns the bucket's object store, opened on first use.
func (f *Fetcher) objectStore(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.ObjectStore, error) {
	f.mu.Lock()
	obs, ok := f.stores[bucket]
	f.mu.Unlock()
	if ok {
		return obs, nil
	}
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stores == nil {
		f.stores = map[string]jetstream.ObjectStore{}
	}
	f.stores[bucket] = obs
	return obs, nil
}

// forgetStore drops the opened bucket, after a failure that may mean it
// is gone.
func (f *Fetcher) forgetStore(bucket string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stores, bucket)
}
