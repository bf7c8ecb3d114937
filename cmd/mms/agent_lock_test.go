package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mms-io/mms/internal/statelock"
	"github.com/mms-io/mms/internal/treetest"
)

// agentArgs are the flags of a test agent on state with its own embedded
// server, trusting a fresh key.
func agentArgs(t *testing.T, state, identity string) []string {
	t.Helper()
	_, pub := newKeyPair(t, t.TempDir(), "ops")
	return []string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--identity", identity, "--status-interval", "200ms"}
}

// TestAgentOnePerStateDir starts two real `mms agent` processes on one
// state directory. The second exits 1 at once naming the first's pid and
// the directory, and changes nothing in the directory: the first is
// frozen (SIGSTOP) meanwhile, so any change would be the second's. The
// first then runs on and stops cleanly.
func TestAgentOnePerStateDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	first := startMMS(t, nil, agentArgs(t, state, "first")...)
	first.waitStderr(t, "agent started")

	first.signal(t, syscall.SIGSTOP)
	first.waitStopped(t) // the signal is delivered asynchronously: a write may still be finishing
	before := treetest.Snapshot(t, state)
	second := startMMS(t, nil, agentArgs(t, state, "second")...)
	if code := second.wait(t); code != 1 {
		t.Errorf("second agent exit code = %d, want 1; stderr:\n%s", code, second.stderr)
	}
	want := fmt.Sprintf("mms: another mms agent (pid %d) is using %s\n", first.pid(), state)
	if got := second.stderr.String(); got != want {
		t.Errorf("second agent stderr = %q, want %q", got, want)
	}
	treetest.AssertSame(t, state, before)
	first.signal(t, syscall.SIGCONT)

	first.signal(t, syscall.SIGTERM)
	if code := first.wait(t); code != 0 {
		t.Errorf("first agent exit code = %d, want 0; stderr:\n%s", code, first.stderr)
	}
}

// TestAgentStartsAfterKilledHolder kills an agent with SIGKILL, which
// leaves its lock file behind with its pid: the kernel released the lock,
// so the next agent on the directory starts and records its own pid.
func TestAgentStartsAfterKilledHolder(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	first := startMMS(t, nil, agentArgs(t, state, "node")...)
	first.waitStderr(t, "agent started")
	first.signal(t, syscall.SIGKILL)
	first.wait(t)

	next := startMMS(t, nil, agentArgs(t, state, "node")...)
	next.waitStderr(t, "agent started")
	lock := readFile(t, filepath.Join(state, statelock.StateFile))
	if want := strconv.Itoa(next.pid()) + "\nmms agent\n"; lock != want {
		t.Errorf("lock file = %q, want %q", lock, want)
	}
	next.signal(t, syscall.SIGTERM)
	if code := next.wait(t); code != 0 {
		t.Errorf("agent after a killed one: exit code %d, want 0; stderr:\n%s", code, next.stderr)
	}
}

// TestMachineRunRespectsAgentLock: `mms machine run --data-dir` on a
// running agent's data directory is refused, naming the agent, and an
// agent does not start on the data directory `mms machine run` uses.
func TestMachineRunRespectsAgentLock(t *testing.T) {
	machine := writeCLIMachine(t, cliMachine)
	state := filepath.Join(t.TempDir(), "state")
	data := filepath.Join(state, "data")
	_, errOut, stop := runUntil(t, agentArgs(t, state, "node")...)
	waitFor(t, errOut, "agent started")
	r := mmsBounded(t, "machine", "run", machine, "--data-dir", data)
	if want := fmt.Sprintf("mms: run machine: another mms agent (pid %d) is using %s\n", os.Getpid(), data); r.code != 1 || r.stderr != want {
		t.Errorf("machine run on the agent's data dir = exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut)
	}

	out, runErr, stopRun := runUntil(t, "machine", "run", machine, "--data-dir", data, "--identity", "laptop")
	waitFor(t, out, "laptop hello transition greeted waiting -> done")
	r = mmsBounded(t, agentArgs(t, state, "node")...)
	if want := fmt.Sprintf("another mms machine run (pid %d) is using %s", os.Getpid(), data); r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("agent while machine run uses its data dir = exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}
	if code := stopRun(); code != 0 {
		t.Errorf("machine run exit code = %d, want 0; stderr:\n%s", code, runErr)
	}
}

// mmsBounded runs the CLI in-process like mms, for a command that should
// refuse at once but would run until interrupted if it did not: it is
// interrupted after e2eTimeout.
func mmsBounded(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), e2eTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}
