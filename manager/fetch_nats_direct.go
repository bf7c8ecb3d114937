package manager

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Batches of a direct object read: one request asks for at most
// directBatchMsgs chunks and directBatchBytes bytes, which bounds what a
// download holds in memory and in its subscription.
const (
	directBatchMsgs  = 32
	directBatchBytes = 4 << 20
)

// directObject reads an object's chunks from the object store's stream
// with batched direct gets (nats-server 2.11 and later answer a direct get
// with "batch" by sending up to that many messages, then an end-of-batch
// status): one request per batch, answered on an inbox of this download,
// instead of an ordered consumer that the server creates, feeds and
// deletes for every download. A server that ignores "batch" answers with
// one message, and the next request asks for the next chunk.
//
// It checks the chunks against the object's size and digest: a chunk
// missing or one too many is an error, never a short archive.
type directObject struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	msgs    chan *nats.Msg
	api     string // the stream's direct get subject
	subject string // the object's chunk subject
	size    uint64
	digest  string // the object's "SHA-256=…", "" when it has none
	h       hash.Hash

	got    uint64 // bytes received
	next   uint64 // the stream sequence to ask from
	asked  bool   // a request is outstanding
	cur    []byte // what is left of the current chunk
	err    error  // sticky: the read failed or ended
	closed bool
	done   <-chan struct{} // closed when the attempt ends (a stall, the deadline, the caller)
}

// numPendingHeader says, on each message and the end of a batch of a
// batched direct get, how many messages of the subject follow.
const numPendingHeader = "Nats-Num-Pending"

// directBatchRequest is a batched direct get (JSApiMsgGetRequest).
type directBatchRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes"`
}

// openDirectObject starts reading the chunks of info, an object of
// bucket, with direct gets on nc. done is closed when the attempt ends: a
// Read waiting for a chunk then returns.
func openDirectObject(nc *nats.Conn, done <-chan struct{}, bucket string, info objectInfo) (*directObject, error) {
	d := &directObject{
		nc:      nc,
		done:    done,
		api:     "$JS.API.DIRECT.GET." + objectStream(bucket),
		subject: "$O." + bucket + ".C." + info.NUID,
		size:    info.Size,
		digest:  info.Digest,
		h:       sha256.New(),
		next:    1, // the server steps to the subject's first message
	}
	if d.size == 0 {
		d.err = io.EOF
		return d, d.verify()
	}
	// Capacity for a whole batch and its end: a full channel would make
	// the connection drop messages.
	d.msgs = make(chan *nats.Msg, directBatchMsgs+8)
	sub, err := nc.ChanSubscribe(nc.NewInbox(), d.msgs)
	if err != nil {
		return nil, fmt.Errorf("subscribe to the object's chunks: %w", err)
	}
	d.sub = sub
	if err := d.request(); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return d, nil
}

// request asks for the next batch of chunks.
func (d *directObject) request() error {
	req, err := json.Marshal(directBatchRequest{Seq: d.next, NextFor: d.subject, Batch: directBatchMsgs, MaxBytes: directBatchBytes})
	if err != nil {
		return err
	}
	if err := d.nc.PublishRequest(d.api, d.sub.Subject, req); err != nil {
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

// Close stops the download; chunks still on their way are dropped.
func (d *directObject) Close() error {
	if d.closed || d.sub == nil {
		d.closed = true
		return nil
	}
	d.closed = true
	return d.sub.Unsubscribe()
}
