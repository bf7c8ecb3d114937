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
	actx, att := f.startAttempt(ctx, m)
	r, size, err := f.getObject(actx, att, f.js, bucket, object, limit)
	if err != nil {
		att.end()
		return nil, err
	}
	att.total.Store(int64(min(size, uint64(limit.limit))))
	att.responded()
	return &body{r: r, c: r, att: att, limit: limit, from: "object store " + bucket,
		cause: func() error { return contextFailure(actx) }}, nil
}

// getObject looks the object up, checks its size and starts reading it;
// it returns the reader and the object's size.
//
// A fleet fetches a new version all at once from one server, and every
// request of every node queues on it. Where the bucket's stream allows
// direct gets (an object store made by nats.go or mms does), a download
// is two direct gets (getDirect): the object's info, then its chunks in
// batches; no consumer is created, and no request goes through the
// JetStream API, whose cost on the server grows with the number of
// clients asking at once. Otherwise it is the object store's own get: the
// info and an ordered consumer. The bucket is opened once per Fetcher,
// not once per download.
func (f *Fetcher) getObject(actx context.Context, att *attempt, js jetstream.JetStream, bucket, object string, limit sizeCap) (io.ReadCloser, uint64, error) {
	b, err := f.objectBucket(actx, js, bucket)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, 0, fmt.Errorf("object store bucket %q not found", bucket)
	case err != nil:
		return nil, 0, att.failure(actx, err, fmt.Sprintf("open object store bucket %q", bucket))
	}
	if b.direct {
		return f.getDirect(actx, att, js, bucket, object, limit)
	}
	return f.getObjectStore(actx, att, js, bucket, object, limit)
}

// getObjectStore gets the object with the object store's own get: its
// info, then an ordered consumer of its chunks; links are followed.
func (f *Fetcher) getObjectStore(actx context.Context, att *attempt, js jetstream.JetStream, bucket, object string, limit sizeCap) (io.ReadCloser, uint64, error) {
	obs, err := js.ObjectStore(actx, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, 0, fmt.Errorf("object store bucket %q not found", bucket)
	case err != nil:
		return nil, 0, att.failure(actx, err, fmt.Sprintf("open object store bucket %q", bucket))
	}
	res, err := obs.Get(actx, object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, 0, fmt.Errorf("object %q not found in object store bucket %q", object, bucket)
	case err != nil:
		f.forgetBucket(bucket)
		return nil, 0, att.failure(actx, err, fmt.Sprintf("get object %q from bucket %q", object, bucket))
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		return nil, 0, att.failure(actx, err, fmt.Sprintf("look up object %q in bucket %q", object, bucket))
	}
	if info.Size > uint64(limit.limit) {
		_ = res.Close()
		return nil, 0, &tooLargeError{msg: fmt.Sprintf("archive exceeds %s (the object's size is %d)", limit.what, info.Size)}
	}
	return res, info.Size, nil
}

// objectBucket is an object store bucket opened on the Fetcher's
// connection: whether the stream behind it answers direct gets.
type objectBucket struct {
	direct bool
}

// objectBucket returns the bucket, opened on first use (one stream info
// request per bucket and Fetcher).
func (f *Fetcher) objectBucket(ctx context.Context, js jetstream.JetStream, bucket string) (objectBucket, error) {
	f.mu.Lock()
	b, ok := f.buckets[bucket]
	f.mu.Unlock()
	if ok {
		return b, nil
	}
	s, err := js.Stream(ctx, objectStream(bucket))
	if err != nil {
		return objectBucket{}, err
	}
	b = objectBucket{direct: s.CachedInfo().Config.AllowDirect}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets == nil {
		f.buckets = map[string]objectBucket{}
	}
	f.buckets[bucket] = b
	return b, nil
}

// forgetBucket drops the opened bucket, after a failure that may mean it
// is gone.
func (f *Fetcher) forgetBucket(bucket string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.buckets, bucket)
}

// objectStream is the name of the stream behind an object store bucket.
func objectStream(bucket string) string { return "OBJ_" + bucket }

// objectInfo is what a download reads of an object's meta message (the
// object store's jetstream.ObjectInfo): only these fields are decoded, for
// decoding the whole info (its headers, metadata and modification time)
// took a tenth of a small download's CPU.
type objectInfo struct {
	NUID    string `json:"nuid"`
	Size    uint64 `json:"size"`
	Chunks  uint32 `json:"chunks"`
	Digest  string `json:"digest,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	Opts    *struct {
		Link *jetstream.ObjectLink `json:"link,omitempty"`
	} `json:"options,omitempty"`
}

// isLink reports whether the object is a link to another object.
func (i objectInfo) isLink() bool { return i.Opts != nil && i.Opts.Link != nil }
