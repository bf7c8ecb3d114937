// Package kvwatch ends NATS Key-Value watches without leaving nats.go's
// delivery goroutine behind.
//
// A watch made by jetstream.KeyValue hands each entry to a channel of 256
// from the subscription's callback, and the callback waits while the
// channel is full. Stopping the watch (Stop, or cancelling the context it
// was made with) unsubscribes, but a callback already waiting stays
// blocked until someone reads the channel: a watch of a busy bucket (the
// status bucket of a large fleet) that is dropped while behind keeps a
// goroutine, up to 256 entries and the subscription's pending messages
// for the life of the process. Whoever drops a watch therefore also reads
// what is left of it; nats.go closes the channel once the subscription's
// goroutine has finished.
package kvwatch

import "github.com/nats-io/nats.go/jetstream"

// Discard reads and drops what w still delivers, in a goroutine of its
// own, until nats.go closes w's channel (after the watch is stopped or
// its context cancelled, or its connection closed). Call it once the
// watch's owner has stopped reading and the watch is being stopped;
// calling it on a watch that is never stopped leaks that goroutine
// instead. A nil w is ignored.
func Discard(w jetstream.KeyWatcher) {
	if w == nil {
		return
	}
	ch := w.Updates()
	if ch == nil {
		return
	}
	go func() {
		for range ch {
		}
	}()
}

// Stop stops w and discards what it still delivers (see [Discard]). Like
// w.Stop, it may wait for the server to delete the watch's consumer, seconds
// when the server is gone: run it in a goroutine where that matters. A nil w
// is ignored.
func Stop(w jetstream.KeyWatcher) error {
	if w == nil {
		return nil
	}
	Discard(w)
	return w.Stop()
}
