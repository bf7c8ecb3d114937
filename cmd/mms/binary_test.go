package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// binDir holds the mms binary the tests build (see mmsBinary); TestMain
// removes it. pkgDir is this package's directory, where it is built from
// (tests may change the working directory first).
var binDir, pkgDir string

func TestMain(m *testing.M) {
	natstest.Serve() // this binary re-executed as a nats-server (natstest.RunClusterProcesses)
	// This binary, run by a test as another user: a port squatter, or a
	// connection flood.
	if addr := os.Getenv(squatEnv); addr != "" {
		os.Exit(squat(addr, os.Getenv(squatModeEnv)))
	}
	if targets := os.Getenv(floodEnv); targets != "" {
		os.Exit(flood(targets))
	}
	// Everything the tests and the processes they start put in the
	// temporary directory goes with this run's own: an agent a test kills
	// while its exec watcher runs a command leaves that command's
	// WATCHER_DATA and WATCHER_FACTS files behind. (Mode 1777 like /tmp:
	// some tests run programs as nobody from copies under it.)
	tmp, err := os.MkdirTemp("", "mms-cmd-test-")
	if err == nil {
		err = errors.Join(os.Chmod(tmp, os.ModeSticky|0o777), os.Setenv("TMPDIR", tmp))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = filepath.Join(tmp, "bin")
	if err := os.Mkdir(binDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if pkgDir, err = os.Getwd(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// buildBinary builds this package into binDir once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "mms")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = pkgDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/mms: %w\n%s", err, out)
	}
	return bin, nil
})

// mmsBinary returns the path of a real mms binary built from this
// package, for tests that need separate processes (locks, signals).
func mmsBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the mms binary; skipped in -short mode")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proc is a running mms process.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	stdout *syncbuf.Buffer
	done   chan struct{}
	err    error // set when done is closed
}

// startMMS starts the mms binary with args; the process is killed when the
// test ends if it still runs.
func startMMS(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(mmsBinary(t), args...), stderr: &syncbuf.Buffer{}, stdout: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start mms %v: %v", args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to pid %d: %v", sig, p.pid(), err)
	}
}

// waitStopped waits until the process is stopped (state T in
// /proc/PID/stat): after SIGSTOP, every thread has left the kernel.
func (p *proc) waitStopped(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return // no /proc to ask; the signal is all there is
	}
	natstest.Eventually(t, e2eTimeout, func() error {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
		if err != nil {
			return err
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return fmt.Errorf("pid %d not stopped yet: %.60s", p.pid(), stat)
		}
		return nil
	})
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	natstest.Eventually(t, e2eTimeout, func() error {
		select {
		case <-p.done:
			return nil
		default:
			return fmt.Errorf("pid %d still runs; stderr:\n%s", p.pid(), p.stderr)
		}
	})
	if ee, ok := errors.AsType[*exec.ExitError](p.err); ok {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait for pid %d: %v", p.pid(), p.err)
	}
	return 0
}

// waitStderr waits until the process's stderr holds every want, failing
// early if it exits.
func (p *proc) waitStderr(t *testing.T, want ...string) {
	t.Helper()
	natstest.Eventually(t, e2eTimeout, func() error {
		s := p.stderr.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-p.done:
			t.Fatalf("pid %d exited (%v) before printing %q; stderr:\n%s", p.pid(), p.err, missing, s)
		default:
		}
		return fmt.Errorf("stderr of pid %d lacks %q:\n%s", p.pid(), missing, s)
	})
}
