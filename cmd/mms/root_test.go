package main

import (
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/natstest"
)

// TestRunWritesNothingAfterReturn runs `mms put` against a server whose
// JetStream API never answers, so the command times out and its context
// closes the NATS connection while run prints the error. The client logs
// the close from its own goroutine; run must neither write stderr
// concurrently with it nor after returning (the race detector checks
// both: mms reads the buffer as soon as run returns). --verbose makes the
// connection log its close.
func TestRunWritesNothingAfterReturn(t *testing.T) {
	opts := natstest.Options(t.TempDir())
	opts.JetStream = false
	srv := natstest.Run(t, opts)
	silent := natstest.Connect(t, srv)
	if _, err := silent.Subscribe("$JS.API.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	env := mmsOK(t, "", "pack", writeFile(t, t.TempDir(), "machines.json", "[]"), "--unsigned").stdout
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			r := mms(t, env, "put", "--verbose", "--server", srv.ClientURL(), "--timeout", "50ms")
			if r.code != 1 || !strings.Contains(r.stderr, "open bucket MACHINES") {
				t.Errorf("mms put to a silent JetStream = exit %d, stderr %q; want 1 and an error opening the bucket", r.code, r.stderr)
			}
		})
	}
	wg.Wait()
}
