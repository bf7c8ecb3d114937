package main

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// TestAgentRunsWithoutCommandTree checks that a running agent does not keep
// the command tree that parsed its flags alive: `mms bench` runs thousands
// of agents in a few processes, and each tree held about 150 KB of flags
// and help texts, a third to almost half of the fleet's heap.
func TestAgentRunsWithoutCommandTree(t *testing.T) {
	url, _ := natstest.DeadURL(t) // no server: the agent runs its machines and keeps trying
	_, pub := newKeyPair(t, t.TempDir(), "ops")
	args := []string{"agent", "--server", url, "--public-key", strings.TrimSpace(readFile(t, pub)),
		"--state-dir", t.TempDir(), "--identity", "tree", "--log-level", "debug"}

	errOut := &syncbuf.Buffer{}
	a := newApp(strings.NewReader(""), io.Discard, errOut)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tree := make(chan weak.Pointer[cobra.Command], 1)
	done := make(chan error, 1)
	go func() {
		root := a.command(args)
		tree <- weak.Make(root)
		done <- a.execute(ctx, root)
	}()
	w := <-tree
	waitFor(t, errOut, "using NATS at "+url, "mmsclitest greeter success")
	natstest.Eventually(t, 10*time.Second, func() error {
		runtime.GC()
		if w.Value() != nil {
			return errors.New("the agent runs, and its command tree is still reachable")
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("agent stopped by itself: %v\n%s", err, errOut.String())
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("agent: %v\n%s", err, errOut.String())
	}
}
