// Package execwatcher is the "exec" watcher: it runs a command from the
// machine directory and reports its exit status. Exit 0 is a Success (the
// success_transition fires); any other exit status, or death by a signal
// the watcher did not send, is a Failure (the fail_transition fires). A
// command that cannot be started or runs past its timeout is an error (the
// fail_transition fires too, and the Runner backs off).
//
// The command line, the environment the command gets and how it is killed
// are those of every watcher that runs commands: see
// github.com/mms-io/mms/watchers/internal/command. In short: no shell,
// a relative command runs from the machine directory, the environment is
// PATH, MACHINE_NAME, MACHINE_WATCHER_NAME, WATCHER_DATA and WATCHER_FACTS
// plus the environment property, and a timed-out command's whole process
// group is killed.
//
// command, each environment entry and governor may be templates, rendered
// once when the machine loads (see github.com/mms-io/mms/watchers/render);
// Choria renders them before every run.
//
// # Governor
//
// With governor set, each run first takes a slot of that fleet-wide
// governor (the same governors as archive downloads: `mms governor add
// NAME LIMIT` creates one) and frees it when the command ends, so at most
// LIMIT nodes run the command at once. Waiting for a slot is bounded by
// governor_timeout (default 5m); a run that gets no slot is an error. The
// command's own timeout starts once it holds the slot.
//
// # Disown
//
// With disown, a run starts the command and returns at once: the check is
// a Success as soon as the command started (the event carries its pid, no
// exit code). The command then runs on its own, and that has costs the
// author takes on:
//
//   - nothing ever learns how it ended: its exit status is not seen, a
//     failure fires no fail_transition, and its output goes to /dev/null;
//   - it has no timeout, and it is not killed when the machine stops, is
//     upgraded or removed, or when the agent stops: a hung command lives
//     until someone kills it;
//   - runs do not wait for each other: with an interval shorter than the
//     command's run time, copies pile up;
//   - it runs in its own session, started through /bin/sh, so it needs a
//     Unix host; its WATCHER_DATA and WATCHER_FACTS files are removed when
//     it ends.
//
// disown cannot be combined with parse_as_data (there is no output to
// parse) or governor (the slot would be freed as soon as the command
// started); timeout is ignored.
package execwatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/internal/command"
	"github.com/mms-io/mms/watchers/render"
)

// Limits of the exec watcher.
const (
	// DefaultTimeout is how long a command may run when timeout is unset.
	DefaultTimeout = command.DefaultTimeout
	// MaxTimeout is the longest timeout the property accepts.
	MaxTimeout = command.MaxTimeout
	// DefaultGovernorTimeout is how long a run waits for a governor slot
	// when governor_timeout is unset; MaxGovernorTimeout is the longest
	// governor_timeout accepted.
	DefaultGovernorTimeout = 5 * time.Minute
	MaxGovernorTimeout     = time.Hour
	// StderrTail is how many trailing bytes of stderr a failure reports.
	StderrTail = command.StderrTail
	// MaxStdout is the most stdout parse_as_data reads.
	MaxStdout = 1 << 20
)

func init() {
	watchers.Register(watchers.Info{
		Type:        "exec",
		Version:     "v1",
		New:         func() watchers.Watcher { return new(Watcher) },
		MinInterval: watchers.Duration(500 * time.Millisecond),
		// A governor wait, then the command: the watcher's own limits
		// always fire first.
		Timeout:  watchers.Duration(MaxGovernorTimeout + MaxTimeout + time.Minute),
		Describe: describe,
	})
}

// ErrTimeout is wrapped by the error Check returns when the command ran
// past its timeout and was killed.
var ErrTimeout = command.ErrTimeout

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// governorName is what a governor name must match.
var governorName = regexp.MustCompile(spec.GovernorPattern)

// Gate takes a slot of the named governor and returns its release func;
// [governor.Governors.Acquire] is one.
type Gate func(ctx context.Context, name string) (release func(), err error)

// Watcher is the exec watcher's configuration (its machine.yaml properties)
// and runtime state.
type Watcher struct {
	// Command is the command line to run, split into words like a shell
	// would split it (quotes and backslashes), without a shell; it may be
	// a template, and what a template action prints is always part of
	// exactly one word, whatever it holds (a value cannot add arguments).
	// Required.
	Command string `json:"command"`
	// Environment holds extra KEY=VALUE variables for the command; each
	// may be a template.
	Environment []string `json:"environment,omitempty"`
	// Timeout is how long the command may run before its process group is
	// killed and the check fails with [ErrTimeout]; at most 1h. Ignored
	// with disown.
	Timeout watchers.Duration `json:"timeout,omitzero" default:"10s"`
	// ParseAsData makes a successful command's stdout a JSON object whose
	// top-level keys are each stored in the machine data.
	ParseAsData bool `json:"parse_as_data,omitempty"`
	// SuppressSuccessAnnounce fires the success_transition of a
	// successful run without publishing a state event; failures are
	// still published.
	SuppressSuccessAnnounce bool `json:"suppress_success_announce,omitempty"`
	// GatherInitialState is accepted for Choria compatibility. In Choria it
	// runs the command soon after start instead of waiting for the first
	// interval; the mms Runner always checks at start when the machine is
	// in a matching state, so it changes nothing.
	GatherInitialState bool `json:"gather_initial_state,omitempty"`
	// Governor names a fleet-wide governor (mms governor add): each run
	// holds one of its slots while the command runs. It may be a template.
	Governor string `json:"governor,omitempty"`
	// GovernorTimeout is how long a run waits for a governor slot before
	// it fails; at most 1h.
	GovernorTimeout watchers.Duration `json:"governor_timeout,omitzero" default:"5m"`
	// Disown starts the command and does not wait for it: it is not timed
	// out, not killed when the machine or agent stops, and its exit status
	// and output are never seen (see the package documentation). Unix only.
	Disown bool `json:"disown,omitempty"`

	argv    []string      // Command split, set by Validate
	timeout time.Duration // Timeout or the default, set by Validate
	govWait time.Duration // GovernorTimeout or the default, set by Validate

	deps watchers.Deps
	env  *command.Env
	log  *slog.Logger
	gate Gate
}

// State is the type-specific part of the exec watcher's state event.
type State struct {
	// Command is the command line as configured.
	Command string `json:"command"`
	// PreviousOutcome is "success" or "error" (Choria's names).
	PreviousOutcome string `json:"previous_outcome"`
	// PreviousRunTime is how long the command ran, in nanoseconds (for a
	// disowned command, how long starting it took).
	PreviousRunTime time.Duration `json:"previous_run_time"`
	// ExitCode is the exit status, -1 when the command did not exit by
	// itself (not started, killed, disowned).
	ExitCode int `json:"exit_code"`
	// Stderr is the last StderrTail bytes of stderr when the run failed.
	Stderr string `json:"stderr,omitempty"`
	// Governor is the governor the run held a slot of.
	Governor string `json:"governor,omitempty"`
	// GovernorWait is how long the run waited for its slot, in
	// nanoseconds.
	GovernorWait time.Duration `json:"governor_wait,omitempty"`
	// PID is the process id of a disowned command's parent shell.
	PID int `json:"pid,omitempty"`
}

// Normalize drops a governor_timeout given without a governor, which
// Choria ignores.
func (w *Watcher) Normalize() []string {
	if w.GovernorTimeout == 0 || w.Governor != "" {
		return nil
	}
	w.GovernorTimeout = 0
	return []string{"governor_timeout: ignored without governor (as in Choria): remove it, or name the governor"}
}

// Validate checks the properties and parses the command line once. A
// templated command, environment entry or governor is only parsed here;
// Provision renders and checks it.
func (w *Watcher) Validate() error {
	var errs []error
	switch {
	case strings.TrimSpace(w.Command) == "":
		errs = append(errs, errors.New("command: required"))
	default:
		argv, err := command.CheckLine(w.Command)
		if err != nil {
			errs = append(errs, fmt.Errorf("command: %w", err))
		}
		w.argv = argv
	}
	for i, e := range w.Environment {
		var err error
		if render.Has(e) {
			err = render.Check(e)
		} else {
			err = checkEnv(e)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("environment[%d] %w", i, err))
		}
	}
	var err error
	if w.timeout, err = command.Timeout(w.Timeout); err != nil {
		errs = append(errs, fmt.Errorf("timeout: %w", err))
	}
	switch {
	case render.Has(w.Governor):
		if err := render.Check(w.Governor); err != nil {
			errs = append(errs, fmt.Errorf("governor: %w", err))
		}
	case w.Governor != "" && !governorName.MatchString(w.Governor):
		errs = append(errs, fmt.Errorf("governor: %q must match %s", w.Governor, spec.GovernorPattern))
	}
	switch {
	case w.GovernorTimeout != 0 && w.Governor == "":
		errs = append(errs, errors.New("governor_timeout: set without governor"))
	case w.GovernorTimeout.Std() > MaxGovernorTimeout:
		errs = append(errs, fmt.Errorf("governor_timeout: %v is longer than the maximum %v", w.GovernorTimeout, MaxGovernorTimeout))
	}
	w.govWait = w.GovernorTimeout.Std()
	if w.govWait == 0 {
		w.govWait = DefaultGovernorTimeout
	}
	if w.Disown {
		switch {
		case !command.CanDisown:
			errs = append(errs, errors.New("disown: not supported on this operating system: it needs a POSIX shell and sessions"))
		case w.ParseAsData:
			errs = append(errs, errors.New("disown: cannot be combined with parse_as_data: a disowned command's output is never read"))
		case w.Governor != "":
			errs = append(errs, errors.New("disown: cannot be combined with governor: the slot would be freed as soon as the command started"))
		}
	}
	return errors.Join(errs...)
}

// checkEnv checks one KEY=VALUE entry of the environment property.
func checkEnv(e string) error {
	k, _, ok := strings.Cut(e, "=")
	switch {
	case !ok:
		return fmt.Errorf("%q: want KEY=VALUE", e)
	case !envName.MatchString(k):
		return fmt.Errorf("%q: invalid variable name %q", e, k)
	case command.Reserved[k]:
		return fmt.Errorf("%q: %s is set by the watcher", e, k)
	case strings.ContainsRune(e, 0):
		return fmt.Errorf("%q: contains a NUL byte", e)
	}
	return nil
}

// renderTemplates renders a templated command, environment entry and
// governor with the node's identity, facts and the machine data, once, and
// checks what they render to as Validate checks literal values.
func (w *Watcher) renderTemplates(d watchers.Deps) error {
	r := render.NewRenderer(d)
	rendered := func(s string) (string, bool, error) {
		out, err := r.String(s)
		return out, render.Has(s), err
	}
	var errs []error
	if render.Has(w.Command) {
		argv, line, err := command.RenderLine(r, w.Command)
		if err != nil {
			errs = append(errs, fmt.Errorf("command: %w", err))
		}
		w.Command, w.argv = line, argv
	}
	env := slices.Clone(w.Environment)
	for i, e := range env {
		out, ok, err := rendered(e)
		if err == nil && ok {
			if cerr := checkEnv(out); cerr != nil {
				err = fmt.Errorf("template %q renders %w", e, cerr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("environment[%d] %w", i, err))
		}
		env[i] = out
	}
	w.Environment = env
	if gov, ok, err := rendered(w.Governor); err != nil {
		errs = append(errs, fmt.Errorf("governor: %w", err))
	} else if ok {
		if !governorName.MatchString(gov) {
			errs = append(errs, fmt.Errorf("governor: template %q renders %q, which does not match %s", w.Governor, gov, spec.GovernorPattern))
		}
		w.Governor = gov
	}
	return errors.Join(errs...)
}

// Provision renders templated properties, keeps the machine's dependencies
// and reaches the node's governors when the watcher has one.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.deps = d
	w.log = d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if err := w.renderTemplates(d); err != nil {
		return err
	}
	env, err := command.NewEnv(d)
	if err != nil {
		return err
	}
	w.env = env
	if w.Governor != "" {
		g, err := governor.NewGate(d.Conn, d.Machine+"#"+d.Watcher+"@"+d.Identity, w.log)
		if err != nil {
			return fmt.Errorf("governor: %w", err)
		}
		w.gate = g
	}
	return nil
}

// Check runs the command once.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	st := State{Command: w.Command, PreviousOutcome: "error", ExitCode: -1, Governor: w.Governor}
	outcome, err := w.run(ctx, &st)
	if err == nil && outcome == watchers.Success {
		st.PreviousOutcome = "success"
		st.Stderr = ""
	}
	return watchers.Result{
		Outcome: outcome, State: st,
		Quiet: w.SuppressSuccessAnnounce && err == nil && outcome == watchers.Success,
	}, err
}

// run runs the command (in a governor slot when configured) and fills st;
// it returns Success, Failure, or an error when the command could not run
// to completion.
func (w *Watcher) run(ctx context.Context, st *State) (watchers.Outcome, error) {
	cs := command.Spec{Line: w.Command, Argv: w.argv, Env: w.Environment, Timeout: w.timeout}
	if w.Disown {
		start := time.Now()
		pid, err := w.env.Start(ctx, cs)
		st.PreviousRunTime = time.Since(start)
		if err != nil {
			return watchers.Failure, err
		}
		st.PID = pid
		w.log.Info("command started disowned", "command", w.Command, "pid", pid)
		return watchers.Success, nil
	}
	if w.Governor != "" {
		start := time.Now()
		gctx, cancel := context.WithTimeout(ctx, w.govWait)
		release, err := w.gate(gctx, w.Governor)
		cancel()
		st.GovernorWait = time.Since(start)
		if err != nil {
			return watchers.Failure, fmt.Errorf("run %q: %w", w.Command, err)
		}
		defer release()
	}
	if w.ParseAsData {
		cs.MaxStdout = MaxStdout
	}
	out, err := w.env.Run(ctx, cs)
	st.PreviousRunTime, st.Stderr, st.ExitCode = out.RunTime, out.Stderr, out.ExitCode
	if err != nil {
		return watchers.Failure, err
	}
	if out.ExitCode != 0 {
		return watchers.Failure, nil
	}
	if w.ParseAsData {
		if out.StdoutOverflow {
			return watchers.Failure, fmt.Errorf("parse_as_data: stdout of %q is longer than %d bytes", w.Command, MaxStdout)
		}
		if err := storeData(w.deps.Data, out.Stdout); err != nil {
			return watchers.Failure, fmt.Errorf("parse_as_data: output of %q: %w", w.Command, err)
		}
	}
	return watchers.Success, nil
}

// storeData puts each top-level key of the JSON object out into store.
func storeData(store watchers.DataStore, out []byte) error {
	if len(strings.TrimSpace(string(out))) == 0 {
		return errors.New("stdout is empty, want a JSON object")
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		return fmt.Errorf("stdout is not valid JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("stdout is a JSON %s, want an object", jsonKind(v))
	}
	if store == nil {
		return errors.New("the machine has no data store")
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if err := store.Put(k, obj[k]); err != nil {
			return fmt.Errorf("store key %q: %w", k, err)
		}
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "value"
}

var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Normalizer  = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
)
