// Package command runs the commands of the exec, metric and nagios
// watchers, the same way for all three.
//
// A command line is split into words like a shell splits a simple command
// ([Split]: quotes and backslashes, nothing expanded) and run directly,
// never through a shell. In a templated line ([RenderLine]) what each
// template action prints is part of exactly one word, never split again. A relative command (./check.sh, bin/check, or a
// bare check.sh that exists in the machine directory) runs from the machine
// directory; any other bare name is looked up in PATH. The working
// directory is the machine directory.
//
// The command gets this environment and nothing else of the agent's:
//
//	PATH                  the agent's PATH followed by the machine directory
//	MACHINE_NAME          the machine's name
//	MACHINE_WATCHER_NAME  the watcher's name
//	WATCHER_DATA          a temporary JSON file holding the machine data
//	WATCHER_FACTS         a temporary JSON file holding the node's facts
//
// followed by the watcher's extra entries (which may replace PATH). The two
// temporary files are removed when the command ends.
//
// On Unix the command runs in its own process group; when it times out, or
// the check is cancelled, the whole group is killed with SIGKILL so no
// grandchild outlives it.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mms-io/mms/watchers"
)

// StderrTail is how many trailing bytes of stderr a run keeps.
const StderrTail = 2048

// The timeout property of a watcher that runs a command.
const (
	// DefaultTimeout is how long a command may run when timeout is unset.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout is the longest timeout accepted.
	MaxTimeout = time.Hour
)

// Timeout returns how long a command may run for a timeout property of
// set: [DefaultTimeout] when it is unset, and an error when it is longer
// than [MaxTimeout].
func Timeout(set watchers.Duration) (time.Duration, error) {
	d := set.Std()
	if d == 0 {
		d = DefaultTimeout
	}
	if d > MaxTimeout {
		return d, fmt.Errorf("%v is longer than the maximum %v", set, MaxTimeout)
	}
	return d, nil
}

// waitDelay bounds the wait for output pipes after the command exited or
// was killed, in case a process outside its group still holds them.
const waitDelay = 2 * time.Second

// disownTimeout bounds starting a disowned command.
const disownTimeout = 10 * time.Second

// ErrTimeout is wrapped by the error [Env.Run] returns when the command ran
// past its timeout and was killed.
var ErrTimeout = errors.New("command timed out")

// Reserved are the environment variables every command gets from the
// watcher; a watcher's extra entries may not set them.
var Reserved = map[string]bool{
	"MACHINE_NAME": true, "MACHINE_WATCHER_NAME": true, "WATCHER_DATA": true, "WATCHER_FACTS": true,
}

// Env is where a watcher's commands run: its machine and node. Build it
// once, in Provision, with [NewEnv].
type Env struct {
	dir       string // absolute machine directory, "" for the agent's
	agentPath string // the agent's PATH with the machine dir appended
	machine   string
	watcher   string
	data      watchers.DataStore
	facts     func() map[string]any
	log       *slog.Logger
}

// NewEnv returns the environment of the watcher d describes.
func NewEnv(d watchers.Deps) (*Env, error) {
	e := &Env{machine: d.Machine, watcher: d.Watcher, data: d.Data, facts: d.Facts, log: d.Log}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if d.Dir != "" {
		dir, err := filepath.Abs(d.Dir)
		if err != nil {
			return nil, fmt.Errorf("resolve machine directory: %w", err)
		}
		e.dir = dir
	}
	e.agentPath = e.dir
	if p := os.Getenv("PATH"); p != "" {
		e.agentPath = p + string(os.PathListSeparator) + e.dir
	}
	return e, nil
}

// Spec is one command to run.
type Spec struct {
	// Line is the command line as configured, for messages.
	Line string
	// Argv is Line split by [Split]; it must not be empty.
	Argv []string
	// Env holds extra KEY=VALUE entries, added after the watcher's own.
	Env []string
	// Timeout bounds the run; it must be positive.
	Timeout time.Duration
	// MaxStdout is how many bytes of stdout to keep; zero discards stdout.
	MaxStdout int
}

// Output is what a run left behind.
type Output struct {
	// Stdout holds up to Spec.MaxStdout bytes of stdout.
	Stdout []byte
	// StdoutOverflow says stdout was longer than Spec.MaxStdout.
	StdoutOverflow bool
	// Stderr is the last StderrTail bytes of stderr, invalid UTF-8 replaced.
	Stderr string
	// ExitCode is the exit status, -1 when the command did not exit by
	// itself (not started, killed by a signal).
	ExitCode int
	// RunTime is how long the command ran.
	RunTime time.Duration
}

// Run runs s and waits for it. The error is nil when the command ran to its
// end, whatever its exit status, and also when someone else killed it with
// a signal (ExitCode -1); it wraps [ErrTimeout] when the command ran past
// s.Timeout, and the context's cause when ctx ended first, in both cases
// after its process group was killed; any other error means it could not
// start.
func (e *Env) Run(ctx context.Context, s Spec) (Output, error) {
	out := Output{ExitCode: -1}
	files, err := e.writeDataFiles()
	if err != nil {
		return out, err
	}
	defer files.remove(e.log)
	env := e.environ(files, s.Env)
	path, err := resolve(s.Argv[0], e.dir, lastValue(env, "PATH"))
	if err != nil {
		return out, err
	}

	rctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, path, s.Argv[1:]...)
	cmd.Args[0] = s.Argv[0]
	cmd.Dir = e.dir
	cmd.Env = env
	cmd.WaitDelay = waitDelay
	killGroupOnCancel(cmd)
	stderr := &tailBuffer{max: StderrTail}
	cmd.Stderr = stderr
	var stdout *limitBuffer
	if s.MaxStdout > 0 {
		stdout = &limitBuffer{max: s.MaxStdout}
		cmd.Stdout = stdout
	}

	start := time.Now()
	err = cmd.Run()
	out.RunTime = time.Since(start)
	out.Stderr = stderr.String()
	if stdout != nil {
		out.Stdout, out.StdoutOverflow = stdout.buf, stdout.overflow
	}
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		out.ExitCode = cmd.ProcessState.ExitCode()
	}

	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success():
		e.log.Warn("command exited but something it started kept its output open", "command", s.Line)
		return out, nil
	case rctx.Err() != nil && ctx.Err() != nil:
		return out, fmt.Errorf("run %q: cancelled: %w", s.Line, context.Cause(ctx))
	case rctx.Err() != nil:
		return out, fmt.Errorf("run %q: %w after %v; its process group was killed", s.Line, ErrTimeout, s.Timeout)
	case errors.As(err, new(*exec.ExitError)):
		// A non-zero exit, or a signal from someone else: the command ran.
		e.log.Debug("command failed", "command", s.Line, "status", cmd.ProcessState.String(), "stderr", out.Stderr)
		return out, nil
	default:
		return out, fmt.Errorf("run %q: %w", s.Line, err)
	}
}

// Start starts s disowned and returns the pid of the process that waits for
// it, without waiting for the command: it runs in its own session, outside
// the agent's process group, with no timeout and stdin, stdout and stderr
// on /dev/null; it is not killed when the check, the machine or the agent
// stops, and its exit status is never seen. Its WATCHER_DATA and
// WATCHER_FACTS files are removed when it ends. s.Timeout and s.MaxStdout
// are ignored. Only where [CanDisown].
func (e *Env) Start(ctx context.Context, s Spec) (pid int, err error) {
	if !CanDisown {
		return 0, errors.New("disowned commands need a POSIX shell and sessions")
	}
	files, err := e.writeDataFiles()
	if err != nil {
		return 0, err
	}
	started := false
	defer func() {
		if !started {
			files.remove(e.log)
		}
	}()
	env := e.environ(files, s.Env)
	path, err := resolve(s.Argv[0], e.dir, lastValue(env, "PATH"))
	if err != nil {
		return 0, err
	}
	// The shell would report a missing or non-executable command nowhere.
	if fi, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("start %q: %w", s.Line, err)
	} else if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return 0, fmt.Errorf("start %q: %s is not an executable file", s.Line, path)
	}
	ctx, cancel := context.WithTimeout(ctx, disownTimeout)
	defer cancel()
	cmd := disowned(ctx, path, s.Argv[1:])
	cmd.Dir = e.dir
	cmd.Env = env
	cmd.WaitDelay = waitDelay
	stdout := &limitBuffer{max: 64}
	cmd.Stdout = stdout
	stderr := &tailBuffer{max: StderrTail}
	cmd.Stderr = stderr
	// The shell exits as soon as it has started the command.
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("start %q disowned: %w %s", s.Line, err, strings.TrimSpace(stderr.String()))
	}
	started = true
	pid, err = strconv.Atoi(strings.TrimSpace(string(stdout.buf)))
	if err != nil {
		return 0, fmt.Errorf("start %q disowned: the shell printed %q, not a pid", s.Line, stdout.buf)
	}
	return pid, nil
}

// environ returns the child's environment.
func (e *Env) environ(files dataFiles, extra []string) []string {
	return append([]string{
		"MACHINE_WATCHER_NAME=" + e.watcher,
		"MACHINE_NAME=" + e.machine,
		"PATH=" + e.agentPath,
		"WATCHER_DATA=" + files.data,
		"WATCHER_FACTS=" + files.facts,
	}, extra...)
}

// dataFiles are the temporary WATCHER_DATA and WATCHER_FACTS files.
type dataFiles struct{ data, facts string }

// writeDataFiles writes the machine data and the facts as JSON objects to
// two new private temporary files.
func (e *Env) writeDataFiles() (dataFiles, error) {
	var data, facts map[string]any
	if e.data != nil {
		data = e.data.All()
	}
	if e.facts != nil {
		facts = e.facts()
	}
	var f dataFiles
	var err error
	if f.data, err = writeJSONTemp("mms-watcher-data-*.json", data); err != nil {
		return dataFiles{}, fmt.Errorf("write WATCHER_DATA: %w", err)
	}
	if f.facts, err = writeJSONTemp("mms-watcher-facts-*.json", facts); err != nil {
		os.Remove(f.data)
		return dataFiles{}, fmt.Errorf("write WATCHER_FACTS: %w", err)
	}
	return f, nil
}

func (f dataFiles) remove(log *slog.Logger) {
	for _, p := range []string{f.data, f.facts} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("remove temporary file", "path", p, "error", err)
		}
	}
}

// writeJSONTemp writes v (a nil map as {}) to a new 0600 temporary file and
// returns its path.
func writeJSONTemp(pattern string, v map[string]any) (string, error) {
	if v == nil {
		v = map[string]any{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String returns the kept bytes with invalid UTF-8 (a cut rune) replaced.
func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.buf, []byte("\uFFFD"))) }

// limitBuffer keeps the first max bytes written to it and notes whether
// more came. It never fails a write, so the command is not killed by a
// broken pipe. (It must not have a ReadFrom method: io.Copy would use it
// and bypass the limit.)
type limitBuffer struct {
	buf      []byte
	max      int
	overflow bool
}

func (l *limitBuffer) Write(p []byte) (int, error) {
	room := l.max - len(l.buf)
	if len(p) > room {
		l.overflow = true
		l.buf = append(l.buf, p[:room]...)
		return len(p), nil
	}
	l.buf = append(l.buf, p...)
	return len(p), nil
}
