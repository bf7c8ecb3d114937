package bench

import (
	"cmp"
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
	done   chan struct{} // closed when RunAgent returned, err set
	err    error
	stderr *tail
}

// startInProcess starts `mms agent args` in this process, without
// file-system notifications: each would hold one of the 128 inotify
// instances Linux allows a user by default, and the manager hands its
// installs to the host directly.
func (b *bench) startInProcess(args []string) *inProcess {
	args = append(slices.Clip(args), "--fs-notify=false")
	ctx, cancel := context.WithCancel(context.Background())
	a := &inProcess{cancel: cancel, done: make(chan struct{}), stderr: &tail{}}
	go func() {
		a.err = b.cfg.RunAgent(ctx, args, a.stderr)
		close(a.done)
	}()
	return a
}

// stopped is closed once the agent has stopped.
func (a *inProcess) stopped() <-chan struct{} { return a.done }

// exited returns why the agent stopped, if it has stopped already.
func (a *inProcess) exited() (error, bool) {
	select {
	case <-a.done:
		if a.err == nil {
			return fmt.Errorf("agent: stopped by itself: %s", a.stderr.String()), true
		}
		return a.explain(a.err), true
	default:
		return nil, false
	}
}

// stop stops the agent and waits up to timeout for it.
func (a *inProcess) stop(timeout time.Duration) error {
	a.cancel()
	select {
	case <-a.done:
		return a.explain(a.err)
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

// exiter is an agent the bench started, in this process or as a child.
type exiter interface {
	stopped() <-chan struct{}
	exited() (error, bool)
}

// untilExit returns a context that ends with ctx, or as soon as the agent
// a stops, with why as its cause: a wait for the agent's events then ends
// at once instead of at its timeout. cancel releases it.
func untilExit(ctx context.Context, a exiter) (_ context.Context, cancel func()) {
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancelOnExit(ctx, cancelCause, a)
	return ctx, func() { cancelCause(nil) }
}

// cancelOnExit ends ctx through cancel, with why a stopped as the cause,
// as soon as a stops; it lets go once ctx ends. Several agents can end
// one ctx: the first to stop names the cause.
func cancelOnExit(ctx context.Context, cancel context.CancelCauseFunc, a exiter) {
	go func() {
		select {
		case <-a.stopped():
			err, _ := a.exited()
			cancel(err)
		case <-ctx.Done():
		}
	}()
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
	done   chan struct{} // closed when the process was waited for, err set
	err    error
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
	c := &child{cmd: cmd, done: make(chan struct{}), stderr: &tail{}}
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", what, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the agent's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// cpu is the CPU time the process used (0 once it cannot be read).
func (c *child) cpu() time.Duration {
	t, _ := ProcCPU(c.pid())
	return t
}

// stopped is closed once the process has exited.
func (c *child) stopped() <-chan struct{} { return c.done }

// exited returns why the agent process exited, if it has already.
func (c *child) exited() (error, bool) {
	select {
	case <-c.done:
		return fmt.Errorf("agent process exited: %v: %s", cmp.Or[error](c.err, errors.New("status 0")), c.stderr.String()), true
	default:
		return nil, false
	}
}

// stop sends SIGTERM and waits for the agent to exit, killing it after
// 30 s.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Errorf("agent process: %w: %s", c.err, c.stderr.String())
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
