// Package execwatcher is the "exec" watcher: it runs a command from the
// machine directory and reports its exit status. Exit 0 is a Success (the
// success_transition fires); any other exit status, or death by a signal
// the watcher did not send, is a Failure (the fail_transition fires). A
// command that cannot be started or runs past its timeout is an error (the
// fail_transition fires too, and the Runner backs off).
//
// The command is split into words like a shell would split a simple command
// (quotes and backslashes, nothing expanded) and run directly, never through
// a shell. A relative command (./check.sh, bin/check, or a bare check.sh
// that exists in the machine directory) runs from the machine directory;
// any other bare name is looked up in PATH. The working directory is the
// machine directory.
//
// The command gets this environment and nothing else of the agent's:
//
//	PATH                  the agent's PATH followed by the machine directory
//	MACHINE_NAME          the machine's name
//	MACHINE_WATCHER_NAME  this watcher's name
//	WATCHER_DATA          a temporary JSON file holding the machine data
//	WATCHER_FACTS         a temporary JSON file holding the node's facts
//
// followed by the entries of the environment property (which may replace
// PATH; HOME, LANG and the like must be set there if the command needs them).
// The two temporary files are removed when the command ends.
//
// The command runs in its own process group; when it times out, or the
// agent cancels the check, the whole group is killed with SIGKILL so no
// grandchild outlives it.
package execwatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mms-io/mms/watchers"
)

// Limits of the exec watcher.
const (
	// DefaultTimeout is how long a command may run when timeout is unset.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout is the longest timeout the property accepts; the type's
	// check timeout is a minute more, so the watcher's own timeout always
	// fires first.
	MaxTimeout = time.Hour
	// StderrTail is how many trailing bytes of stderr a failure reports.
	StderrTail = 2048
	// MaxStdout is the most stdout parse_as_data reads.
	MaxStdout = 1 << 20
	// waitDelay bounds the wait for output pipes after the command exited
	// or was killed, in case a process outside its group still holds them.
	waitDelay = 2 * time.Second
)

func init() {
	watchers.Register(watchers.Info{
		Type:        "exec",
		Version:     "v1",
		New:         func() watchers.Watcher { return new(Watcher) },
		MinInterval: watchers.Duration(500 * time.Millisecond),
		Timeout:     watchers.Duration(MaxTimeout + time.Minute),
	})
}

// ErrTimeout is wrapped by the error Check returns when the command ran
// past its timeout and was killed.
var ErrTimeout = errors.New("command timed out")

// Environment variables the watcher sets itself; the environment property
// may not set them.
var reserved = map[string]bool{
	"MACHINE_NAME": true, "MACHINE_WATCHER_NAME": true, "WATCHER_DATA": true, "WATCHER_FACTS": true,
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Watcher is the exec watcher's configuration (its machine.yaml properties)
// and runtime state.
type Watcher struct {
	// Command is the command line to run, split into words like a shell
	// would split it (quotes and backslashes), without a shell. Required.
	Command string `json:"command"`
	// Environment holds extra KEY=VALUE variables for the command.
	Environment []string `json:"environment,omitempty"`
	// Timeout is how long the command may run before its process group is
	// killed and the check fails with [ErrTimeout]; default 10s, at most 1h.
	Timeout watchers.Duration `json:"timeout,omitzero"`
	// ParseAsData makes a successful command's stdout a JSON object whose
	// top-level keys are each stored in the machine data.
	ParseAsData bool `json:"parse_as_data,omitempty"`
	// SuppressSuccessAnnounce would fire the success transition without
	// publishing an event. The watcher contract has no outcome for that
	// yet, so true is rejected rather than silently ignored.
	SuppressSuccessAnnounce bool `json:"suppress_success_announce,omitempty"`
	// GatherInitialState is accepted for Choria compatibility. In Choria it
	// runs the command soon after start instead of waiting for the first
	// interval; the mms Runner always checks at start when the machine is
	// in a matching state, so it changes nothing.
	GatherInitialState bool `json:"gather_initial_state,omitempty"`
	// Governor would limit fleet-wide concurrency; not supported yet, so a
	// value is rejected.
	Governor string `json:"governor,omitempty"`
	// GovernorTimeout belongs to Governor; not supported yet.
	GovernorTimeout watchers.Duration `json:"governor_timeout,omitzero"`
	// Disown (Choria: start the command and do not wait) is not supported:
	// the Runner waits for every command. True is rejected.
	Disown bool `json:"disown,omitempty"`

	argv    []string      // Command split, set by Validate
	timeout time.Duration // Timeout or the default, set by Validate

	deps      watchers.Deps
	dir       string // absolute machine directory, "" for the agent's
	log       *slog.Logger
	agentPath string // the agent's PATH with the machine dir appended
}

// State is the type-specific part of the exec watcher's state event.
type State struct {
	// Command is the command line as configured.
	Command string `json:"command"`
	// PreviousOutcome is "success" or "error" (Choria's names).
	PreviousOutcome string `json:"previous_outcome"`
	// PreviousRunTime is how long the command ran, in nanoseconds.
	PreviousRunTime time.Duration `json:"previous_run_time"`
	// ExitCode is the exit status, -1 when the command did not exit by
	// itself (not started, killed).
	ExitCode int `json:"exit_code"`
	// Stderr is the last StderrTail bytes of stderr when the run failed.
	Stderr string `json:"stderr,omitempty"`
}

// Validate checks the properties and parses the command line once.
func (w *Watcher) Validate() error {
	var errs []error
	if strings.TrimSpace(w.Command) == "" {
		errs = append(errs, errors.New("command: required"))
	} else if argv, err := splitWords(w.Command); err != nil {
		errs = append(errs, fmt.Errorf("command: %w", err))
	} else {
		w.argv = argv
	}
	for i, e := range w.Environment {
		k, _, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("environment[%d] %q: want KEY=VALUE", i, e))
		case !envName.MatchString(k):
			errs = append(errs, fmt.Errorf("environment[%d] %q: invalid variable name %q", i, e, k))
		case reserved[k]:
			errs = append(errs, fmt.Errorf("environment[%d] %q: %s is set by the watcher", i, e, k))
		case strings.ContainsRune(e, 0):
			errs = append(errs, fmt.Errorf("environment[%d]: contains a NUL byte", i))
		}
	}
	w.timeout = w.Timeout.Std()
	if w.timeout == 0 {
		w.timeout = DefaultTimeout
	}
	if w.timeout > MaxTimeout {
		errs = append(errs, fmt.Errorf("timeout: %v is longer than the maximum %v", w.Timeout, MaxTimeout))
	}
	if w.SuppressSuccessAnnounce {
		errs = append(errs, errors.New("suppress_success_announce: not supported yet: every success is published"))
	}
	if w.Governor != "" || w.GovernorTimeout != 0 {
		errs = append(errs, errors.New("governor: not supported yet"))
	}
	if w.Disown {
		errs = append(errs, errors.New("disown: not supported: the agent waits for every command"))
	}
	return errors.Join(errs...)
}

// Provision keeps the machine's dependencies.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.deps = d
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if d.Dir != "" {
		dir, err := filepath.Abs(d.Dir)
		if err != nil {
			return fmt.Errorf("resolve machine directory: %w", err)
		}
		w.dir = dir
	}
	w.agentPath = w.dir
	if p := os.Getenv("PATH"); p != "" {
		w.agentPath = p + string(os.PathListSeparator) + w.dir
	}
	return nil
}

// Check runs the command once.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	st := State{Command: w.Command, PreviousOutcome: "error", ExitCode: -1}
	outcome, err := w.run(ctx, &st)
	if err == nil && outcome == watchers.Success {
		st.PreviousOutcome = "success"
		st.Stderr = ""
	}
	return watchers.Result{Outcome: outcome, State: st}, err
}

// run runs the command and fills st; it returns Success, Failure, or an
// error when the command could not run to completion.
func (w *Watcher) run(ctx context.Context, st *State) (watchers.Outcome, error) {
	files, err := writeDataFiles(w.deps)
	if err != nil {
		return watchers.Failure, err
	}
	defer files.remove(w.log)

	env := append([]string{
		"MACHINE_WATCHER_NAME=" + w.deps.Watcher,
		"MACHINE_NAME=" + w.deps.Machine,
		"PATH=" + w.agentPath,
		"WATCHER_DATA=" + files.data,
		"WATCHER_FACTS=" + files.facts,
	}, w.Environment...)
	path, err := w.resolve(lastValue(env, "PATH"))
	if err != nil {
		return watchers.Failure, err
	}

	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, path, w.argv[1:]...)
	cmd.Args[0] = w.argv[0]
	cmd.Dir = w.dir
	cmd.Env = env
	cmd.WaitDelay = waitDelay
	killGroupOnCancel(cmd)
	stderr := &tailBuffer{max: StderrTail}
	cmd.Stderr = stderr
	var stdout *limitBuffer
	if w.ParseAsData {
		stdout = &limitBuffer{max: MaxStdout}
		cmd.Stdout = stdout
	}

	start := time.Now()
	err = cmd.Run()
	st.PreviousRunTime = time.Since(start)
	st.Stderr = stderr.String()
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		st.ExitCode = cmd.ProcessState.ExitCode()
	}

	switch {
	case err == nil:
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success():
		w.log.Warn("command exited but something it started kept its output open", "command", w.Command)
	case rctx.Err() != nil && ctx.Err() != nil:
		return watchers.Failure, fmt.Errorf("run %q: cancelled: %w", w.Command, context.Cause(ctx))
	case rctx.Err() != nil:
		return watchers.Failure, fmt.Errorf("run %q: %w after %v; its process group was killed", w.Command, ErrTimeout, w.timeout)
	case errors.As(err, new(*exec.ExitError)):
		// A non-zero exit, or a signal from someone else: the command ran
		// and failed.
		w.log.Debug("command failed", "command", w.Command, "status", cmd.ProcessState.String(), "stderr", st.Stderr)
		return watchers.Failure, nil
	default:
		return watchers.Failure, fmt.Errorf("run %q: %w", w.Command, err)
	}

	if w.ParseAsData {
		if stdout.overflow {
			return watchers.Failure, fmt.Errorf("parse_as_data: stdout of %q is longer than %d bytes", w.Command, MaxStdout)
		}
		if err := storeData(w.deps.Data, stdout.buf); err != nil {
			return watchers.Failure, fmt.Errorf("parse_as_data: output of %q: %w", w.Command, err)
		}
	}
	return watchers.Success, nil
}

var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
)
