package manager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Batches of a direct object read: one request asks for at most
// directBatchMsgs chunks and directBatchBytes bytes, which bounds what a
// download holds in memory and in its reply channel.
const (
	directBatchMsgs  = 32
	directBatchBytes = 4 << 20
)

// numPendingHeader says, on each message and the end of a batch of a
// batched direct get, how many messages of the subject follow.
const numPendingHeader = "Nats-Num-Pending"

// directBatchRequest is a batched direct get (JSApiMsgGetRequest).
type directBatchRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// replyMux receives the answers to a Fetcher's direct gets on one
// wildcard subscription, made on first use and kept: a download registers
// a token and reads its answers from a channel, so it costs the server no
// subscription of its own (each would be an insert into and a removal from
// the server's subject index, two more protocol messages per download).
type replyMux struct {
	prefix string // "<inbox>." the tokens follow
	sub    *nats.Subscription

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
}

// directReplies returns the Fetcher's replyMux, subscribed on first use.
func (f *Fetcher) directReplies() (*replyMux, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replies != nil {
		return f.replies, nil
	}
	m := &replyMux{prefix: f.cfg.Conn.NewInbox() + ".", waiting: map[string]chan *nats.Msg{}}
	sub, err := f.cfg.Conn.Subscribe(m.prefix+"*", m.deliver)
	if err != nil {
		return nil, fmt.Errorf("subscribe to direct get replies: %w", err)
	}
	m.sub = sub
	f.replies = m
	return m, nil
}

// deliver hands msg to the download its token names; answers for a
// download that ended are dropped.
func (m *replyMux) deliver(msg *nats.Msg) {
	token := strings.TrimPrefix(msg.Subject, m.prefix)
	m.mu.Lock()
	ch := m.waiting[token]
	m.mu.Unlock()
	select {
	case ch <- msg: // a nil ch (no such download) blocks: the default drops it
	default:
	}
}

// idle reports whether no download waits for answers.
func (m *replyMux) idle() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.waiting) == 0
}

// register returns a new reply subject and the channel its answers come
// on (room for a whole batch and its end), and the function that forgets
// it.
func (m *replyMux) register() (reply string, ch chan *nats.Msg, forget func()) {
	token := nuid.Next()
	ch = make(chan *nats.Msg, directBatchMsgs+8)
	m.mu.Lock()
	m.waiting[token] = ch
	m.mu.Unlock()
	return m.prefix + token, ch, func() {
		m.mu.Lock()
		delete(m.waiting, token)
		m.mu.Unlock()
	}
}

// getDirect is getObject over direct gets: the object's info (the last
// message of its meta subject), then its chunks (directObject), both
// answered on one reply subject of the Fetcher's replyMux. A link to
// another object is followed by the object store's own get.
func (f *Fetcher) getDirect(actx context.Context, att *attempt, js jetstream.JetStream, bucket, object string, limit sizeCap) (io.ReadCloser, uint64, error) {
	mux, err := f.directReplies()
	if err != nil {
		return nil, 0, err
	}
	reply, ch, forget := mux.register()
	nc := f.cfg.Conn
	api := "$JS.API.DIRECT.GET." + objectStream(bucket)
	meta := "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(object))
	if err := nc.PublishRequest(api+"."+meta, reply, nil); err != nil {
		forget()
		return nil, 0, att.failure(actx, err, fmt.Sprintf("look up object %q in bucket %q", object, bucket))
	}
	var msg *nats.Msg
	select {
	case msg = <-ch:
	case <-actx.Done():
		forget()
		return nil, 0, contextFailure(actx)
	}
	info, err := directInfo(msg, object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		forget()
		return nil, 0, fmt.Errorf("object %q not found in object store bucket %q", object, bucket)
	case err != nil:
		forget()
		f.forgetBucket(bucket) // deleted or recreated: open it again next time
		return nil, 0, att.failure(actx, err, fmt.Sprintf("look up object %q in bucket %q", object, bucket))
	case info.isLink():
		forget()
		return f.getObjectStore(actx, att, js, bucket, object, limit)
	case info.Size > uint64(limit.limit):
		forget()
		return nil, 0, &tooLargeError{msg: fmt.Sprintf("archive exceeds %s (the object's size is %d)", limit.what, info.Size)}
	}
	d := &directObject{
		nc:      nc,
		api:     api,
		reply:   reply,
		msgs:    ch,
		forget:  forget,
		done:    actx.Done(),
		subject: "$O." + bucket + ".C." + info.NUID,
		size:    info.Size,
		chunks:  info.Chunks,
		digest:  info.Digest,
		h:       sha256.New(),
		next:    1, // the server steps to the subject's first message
	}
	if d.size == 0 {
		d.err = io.EOF
		if err := d.verify(); err != nil {
			d.Close()
			return nil, 0, err
		}
		return d, 0, nil
	}
	if err := d.request(); err != nil {
		d.Close()
		return nil, 0, att.failure(actx, err, fmt.Sprintf("get object %q from bucket %q", object, bucket))
	}
	return d, info.Size, nil
}

// directInfo reads the answer to a direct get of an object's meta
// message: its info, jetstream.ErrObjectNotFound, or why it failed.
func directInfo(msg *nats.Msg, object string) (objectInfo, error) {
	if status := msg.Header.Get("Status"); status != "" && len(msg.Data) == 0 {
		if status == "404" {
			return objectInfo{}, jetstream.ErrObjectNotFound
		}
		return objectInfo{}, fmt.Errorf("direct get: status %s %s", status, msg.Header.Get("Description"))
	}
	var info objectInfo
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		return objectInfo{}, fmt.Errorf("object %q: invalid meta message: %w", object, err)
	}
	if info.Deleted {
		return objectInfo{}, jetstream.ErrObjectNotFound
	}
	if info.NUID == "" && !info.isLink() {
		return objectInfo{}, fmt.Errorf("object %q: invalid meta message: no chunk id", object)
	}
	return info, nil
}

// directObject reads an object's chunks from the object store's stream
// with batched direct gets (nats-server 2.11 and later answer a direct get
// with "batch" by sending up to that many messages, then an end-of-batch
// status): one request per batch instead of an ordered consumer that the
// server creates, feeds and deletes for every download. A server that
// ignores "batch" answers with one message, and the next request asks
// for the next chunk.
//
// It checks the chunks against the object's size and digest: a chunk
// missing or one too many is an error, never a short archive.
type directObject struct {
	nc      *nats.Conn
	api     string // the stream's direct get subject
	reply   string
	msgs    chan *nats.Msg
	forget  func()
	done    <-chan struct{} // closed when the attempt ends (a stall, the deadline, the caller)
	subject string          // the object's chunk subject
	size    uint64
	chunks  uint32 // how many chunks the object's info says it has
	digest  string // the object's "SHA-256=…", "" when it has none
	h       hash.Hash

	got    uint64 // bytes received
	next   uint64 // the stream sequence to ask from
	asked  bool   // a request is outstanding
	cur    []byte // what is left of the current chunk
	err    error  // sticky: the read failed or ended
	closed bool
}

// request asks for the next batch of chunks; for an object of one chunk
// (most archives are a few kB, a chunk is 128 kB), the chunk alone, which
// the server answers without an end-of-batch message.
func (d *directObject) request() error {
	r := directBatchRequest{Seq: d.next, NextFor: d.subject, Batch: directBatchMsgs, MaxBytes: directBatchBytes}
	if d.chunks == 1 {
		r.Batch, r.MaxBytes = 0, 0
	}
	req, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := d.nc.PublishRequest(d.api, d.reply, req); err != nil {
		return fmt.Errorf("request the object's chunks: %w", err)
	}
	d.asked = true
	return nil
}

// Read serves the object's bytes in order. It waits for a chunk until
// one arrives or the attempt ends (body watches it with the idle timer
// and the deadline, and reports why it ended).
func (d *directObject) Read(p []byte) (int, error) {
	for len(d.cur) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if !d.asked {
			if d.err = d.request(); d.err != nil {
				return 0, d.err
			}
		}
		var msg *nats.Msg
		select {
		case msg = <-d.msgs:
		case <-d.done:
			d.err = errors.New("object download canceled")
			return 0, d.err
		}
		if d.err = d.take(msg); d.err != nil && !errors.Is(d.err, io.EOF) {
			return 0, d.err
		}
	}
	n := copy(p, d.cur)
	d.cur = d.cur[n:]
	return n, nil
}

// take handles one message of a batch: a chunk, the end of the batch, or
// a status that ends the read. It returns io.EOF once every byte arrived
// and verified.
func (d *directObject) take(msg *nats.Msg) error {
	if status := msg.Header.Get("Status"); status != "" && len(msg.Data) == 0 {
		d.asked = false
		switch status {
		case "204": // the end of a batch
			pending := msg.Header.Get(numPendingHeader)
			if pending == "0" && d.got < d.size {
				return d.short()
			}
			return nil
		case "404":
			return d.short()
		}
		return &transientError{err: fmt.Errorf("direct get of the object's chunks: status %s %s", status, msg.Header.Get("Description"))}
	}
	if subj := msg.Header.Get(jetstream.SubjectHeader); subj != d.subject {
		return fmt.Errorf("direct get of the object's chunks: got a message of %q, want %q", subj, d.subject)
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq < d.next {
		return fmt.Errorf("direct get of the object's chunks: bad sequence %q", msg.Header.Get(jetstream.SequenceHeader))
	}
	d.next = seq + 1
	if msg.Header.Get(numPendingHeader) == "" {
		// A server without batches: one message per request.
		d.asked = false
	}
	if d.got+uint64(len(msg.Data)) > d.size {
		return fmt.Errorf("object has more than its %d bytes", d.size)
	}
	d.got += uint64(len(msg.Data))
	d.h.Write(msg.Data)
	d.cur = msg.Data
	if d.got == d.size {
		if err := d.verify(); err != nil {
			return err
		}
		return io.EOF
	}
	return nil
}

// short is the error of a read that ran out of chunks before the size.
func (d *directObject) short() error {
	return &transientError{err: fmt.Errorf("object store returned %d of the object's %d bytes", d.got, d.size)}
}

// verify checks the digest of the bytes received, when the object has
// one.
func (d *directObject) verify() error {
	want, ok := strings.CutPrefix(d.digest, "SHA-256=")
	if !ok {
		return nil // no digest (or not one this reader knows): the archive's checksum still applies
	}
	sum, err := base64.URLEncoding.DecodeString(want)
	if err != nil {
		return fmt.Errorf("object's digest %q is not valid base64", d.digest)
	}
	if !bytes.Equal(sum, d.h.Sum(nil)) {
		return errors.New("object's chunks do not match its digest")
	}
	return nil
}

// Close ends the download: its reply subject is forgotten, and chunks
// still on their way are dropped.
func (d *directObject) Close() error {
	if !d.closed {
		d.closed = true
		d.forget()
	}
	return nil
}
