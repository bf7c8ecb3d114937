package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// agentArgs are the `mms agent` flags of a bench node: a client of the
// bench's NATS (never an embedded server), trusting the bench's key,
// everything under stateDir, watching key of the spec bucket. Only errors
// are logged.
func (b *bench) agentArgs(servers, stateDir, identity, key string) []string {
	return []string{
		"--server", servers,
		"--public-key", b.keys.pub,
		"--state-dir", stateDir,
		"--identity", identity,
		"--key", key,
		"--allow-http",
		"--log-level", "warn",
	}
}

// inProcess is an agent running in this process (Config.RunAgent).
type inProcess struct {
	cancel context.CancelFunc
	done   chan error
	stderr *tail
}

// startInProcess starts `mms agent args` in this process, without
// file-system notifications: each would hold one of the 128 inotify
// instances Linux allows a user by default, and the manager hands its
// installs to the host directly.
func (b *bench) startInProcess(args []string) *inProcess {
	args = append(slices.Clip(args), "--fs-notify=false")
	ctx, cancel := context.WithCancel(context.Background())
	a := &inProcess{cancel: cancel, done: make(chan error, 1), stderr: &tail{}}
	go func() { a.done <- b.cfg.RunAgent(ctx, args, a.stderr) }()
	return a
}

// exited returns the agent's error if it has stopped already.
func (a *inProcess) exited() (error, bool) {
	select {
	case err := <-a.done:
		a.done <- err
		return a.explain(err), true
	default:
		return nil, false
	}
}

// stop stops the agent and waits up to timeout for it.
func (a *inProcess) stop(timeout time.Duration) error {
	a.cancel()
	select {
	case err := <-a.done:
		a.done <- err
		return a.explain(err)
	case <-time.After(timeout):
		return fmt.Errorf("agent did not stop within %v", timeout)
	}
}

func (a *inProcess) explain(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("agent: %w: %s", err, a.stderr.String())
}

// stopAll stops agents, many at once, and returns the first error.
func stopAll(agents []*inProcess, timeout time.Duration) error {
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, a := range agents {
		a.cancel() // all at once: each takes a while to write its last status
	}
	for _, a := range agents {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := a.stop(timeout); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// child is an agent process (Config.AgentCommand).
type child struct {
	cmd    *exec.Cmd
	done   chan error
	stderr *tail
}

// startChild starts an `mms agent args` process with env added to its
// environment.
func (b *bench) startChild(ctx context.Context, args, env []string) (*child, error) {
	cmd := b.cfg.AgentCommand(ctx, args)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(cmd, "an agent process")
}

// startCmd starts cmd, its output kept for errors; what names it in them.
func startCmd(cmd *exec.Cmd, what string) (*child, error) {
	c := &child{cmd: cmd, done: make(chan error, 1), stderr: &tail{}}
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", what, err)
	}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// pid is the agent's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// cpu is the CPU time the process used (0 once it cannot be read).
func (c *child) cpu() time.Duration {
	t, _ := ProcCPU(c.pid())
	return t
}

// exited returns the agent's error if it has stopped already.
func (c *child) exited() (error, bool) {
	select {
	case err := <-c.done:
		c.done <- err
		return fmt.Errorf("agent process exited: %v: %s", err, c.stderr.String()), true
	default:
		return nil, false
	}
}

// stop sends SIGTERM and waits for the agent to exit, killing it after
// 30 s.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			return fmt.Errorf("agent process: %w: %s", err, c.stderr.String())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("agent process did not stop within 30s of SIGTERM; killed")
	}
}

// tail keeps the last few KiB written to it: an agent's diagnostics, for
// the error when it fails.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
