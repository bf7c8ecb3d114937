package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/packer"
)

// TestPutWaitOutlivesTimeout: --timeout bounds connecting and the write,
// not --wait. An agent that applies the spec after --timeout has passed is
// still seen (the connection used to close at --timeout, ending the watch:
// "the watch of MACHINES_STATUS ended").
func TestPutWaitOutlivesTimeout(t *testing.T) {
	url, kv := putServer(t)
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	env := mmsOK(t, "", "pack", writeFile(t, dir, "machines.json", machinesJSON("web")), "--key-file", key, "--serial", "7").stdout
	next, err := packer.Inspect([]byte(strings.TrimSpace(env)))
	if err != nil {
		t.Fatal(err)
	}
	putDoc(t, kv, statusDocument("web1", 6, time.Now().UTC()))

	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- run(t.Context(), []string{"put", "--server", url, "--wait", "30s", "--timeout", "1s"}, strings.NewReader(env), &out, &errOut)
	}()
	waitFor(t, &errOut, "serial 7: 0/1 applied")
	// Past --timeout (a condition on the clock, not an outcome to wait for).
	natstest.Eventually(t, 10*time.Second, func() error {
		if time.Since(start) < 2*time.Second {
			return errors.New("--timeout has not passed yet")
		}
		return nil
	})
	applied := statusDocument("web1", 7, time.Now().UTC())
	applied.Applied.Digest, applied.Seen.Digest = next.Digest, next.Digest
	putDoc(t, kv, applied)
	var code int
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case code = <-done:
			return nil
		default:
			return errors.New("put --wait still running after the agent applied")
		}
	})
	if code != 0 || !strings.Contains(errOut.String(), "serial 7: 1/1 applied") {
		t.Errorf("put --wait 30s --timeout 1s = exit %d, stderr %q; want 0 once web1 applied", code, errOut.String())
	}
}
