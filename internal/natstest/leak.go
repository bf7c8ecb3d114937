package natstest

import (
	"runtime/pprof"
	"strings"
)

// BlockedWatchCallbacks returns how many goroutines of this process wait
// inside a KV watch's delivery callback: nats.go's callback waits there
// while the watch's channel of 256 is full, and stays after the watch is
// stopped unless someone reads what is left (package kvwatch). It reads a
// goroutine dump, so poll it with Eventually rather than in a loop.
func BlockedWatchCallbacks() int {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return strings.Count(b.String(), "jetstream.(*kvs).WatchFiltered.func")
}
