package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// floodEnv makes this test binary a connection flood (see TestMain):
// comma-separated "kind=host:port" targets, kind nats (connect and say
// nothing) or http (connect and send one keep-alive request).
const floodEnv = "MMS_TEST_FLOOD"

// floodConns is how many connections the flood keeps open to each target;
// floodFor how long it runs.
const (
	floodConns = 600
	floodFor   = 8 * time.Second
)

// flood opens floodConns connections to each target and holds them,
// dialing again each one the server closes, for floodFor; it prints how
// many it opened. It returns an exit code.
func flood(targets string) int {
	var wg sync.WaitGroup
	var opened atomic.Int64
	deadline := time.Now().Add(floodFor)
	for _, t := range strings.Split(targets, ",") {
		kind, addr, _ := strings.Cut(t, "=")
		for range floodConns {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					opened.Add(1)
					if kind == "http" {
						_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n"))
					}
					_ = c.SetReadDeadline(deadline)
					buf := make([]byte, 4096)
					for { // until the server closes it, or the flood ends
						if _, err := c.Read(buf); err != nil {
							break
						}
					}
					c.Close()
				}
			})
		}
	}
	wg.Wait()
	fmt.Printf("flood: opened %d connections\n", opened.Load())
	return 0
}

// openFDs is the number of open file descriptors of pid.
func openFDs(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(entries), err
}

// tickerMachineYAML is a machine whose exec watcher appends a line to a
// file every second: a machine that needs new descriptors (pipes, a
// process) all the time.
func tickerMachineYAML(ticks string) (yaml, script string) {
	return `name: ticker
version: 1.0.0
initial_state: run
transitions:
  - name: again
    from: [run]
    destination: run
watchers:
  - name: tick
    type: exec
    state_match: [run]
    interval: 1s
    properties:
      command: ./tick.sh
`, "#!/bin/sh\necho tick >> " + ticks + "\n"
}

// TestAgentKeepsItsDescriptors is issue 23's sixth finding, with a real
// agent process allowed 256 open files and an unprivileged local user
// (nobody) who opens 600 connections to the embedded server and 600
// keep-alive requests to --metrics-listen and holds them: the agent's
// descriptors stay below its limit (the server takes at most 128
// connections, the metrics server 32 at once and closes idle ones), its
// machine's exec watcher keeps running, and nothing logs "too many open
// files".
func TestAgentKeepsItsDescriptors(t *testing.T) {
	bin := mmsBinary(t)
	f := newOperatorFixture(t)
	ticks := filepath.Join(t.TempDir(), "ticks")
	yaml, script := tickerMachineYAML(ticks)
	entry := f.repo.publishFiles(t, "ticker", "1.0.0", map[string]string{"machine.yaml": yaml, "tick.sh": script})

	args := append(testAgentArgs(t, f.pub, f.state), "--metrics-listen", "127.0.0.1:0")
	cmd := exec.Command("/bin/sh", append([]string{"-c", `ulimit -n 256 && exec "$0" "$@"`, bin}, args...)...)
	errOut := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = errOut, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	waitFor(t, errOut, "agent started", "max_connections=128 open_files_limit=256")
	metrics := metricsURL.FindStringSubmatch(errOut.String())
	if metrics == nil {
		t.Fatalf("no metrics url in:\n%s", errOut)
	}
	login := loginOf(t, f.state)
	writeMachines(t, f.dir, entry)
	packPut(t, append(f.sign, "--allow-http"), login.flags())
	tickCount := func() int {
		b, _ := os.ReadFile(ticks)
		return strings.Count(string(b), "tick")
	}
	natstest.Eventually(t, e2eTimeout, func() error {
		if n := tickCount(); n < 2 {
			return fmt.Errorf("the ticker ran %d times", n)
		}
		return nil
	})

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	flooder := asNobody(t, exec.Command(publicCopy(t, self)))
	flooder.Env = append(os.Environ(), floodEnv+"=nats="+strings.TrimPrefix(login.url, "nats://")+",http="+strings.TrimPrefix(metrics[1], "http://"))
	out := &syncbuf.Buffer{}
	flooder.Stdout, flooder.Stderr = out, out
	before, logFrom := tickCount(), len(errOut.String())
	if err := flooder.Start(); err != nil {
		t.Fatal(err)
	}
	most := 0
	for stop := time.Now().Add(floodFor); time.Now().Before(stop); time.Sleep(50 * time.Millisecond) {
		if n, err := openFDs(cmd.Process.Pid); err == nil && n > most {
			most = n
		}
	}
	if err := flooder.Wait(); err != nil {
		t.Fatalf("the flood: %v\n%s", err, out)
	}
	t.Logf("%s; the agent held at most %d descriptors (limit 256)", strings.TrimSpace(out.String()), most)
	if most > 256-32 {
		t.Errorf("the agent held %d descriptors during the flood, want fewer than %d (its limit is 256)", most, 256-32)
	}
	if n := tickCount(); n-before < 3 {
		t.Errorf("the ticker ran %d times during the %v flood, want it to keep running", n-before, floodFor)
	}
	if s := errOut.String()[logFrom:]; strings.Contains(s, "too many open files") {
		t.Errorf("the agent ran out of descriptors during the flood:\n%s", s)
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if err == nil && !strings.Contains(string(limits), "Max open files            256                  256") {
		t.Errorf("the agent's limits:\n%s", limits)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
}
