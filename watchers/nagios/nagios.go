// Package nagioswatcher is the "nagios" watcher: it runs a Nagios plugin
// (a check following the Nagios plugin protocol) and moves its machine to
// the state the check found. It reads Choria's nagios properties and
// publishes Choria's nagios events, so Choria Scout check machines run
// unchanged.
//
// # Checks and transitions
//
// The plugin's exit status is its result: 0 OK, 1 WARNING, 2 CRITICAL, 3
// UNKNOWN; any other status, a plugin that cannot be started and one that
// runs past its timeout are UNKNOWN too, with the reason as the output.
// After a check the watcher fires the transition named like the result
// (OK, WARNING, CRITICAL or UNKNOWN; the machine must define them, as
// Choria's check machines do) unless the machine is in that state already:
// then the check only publishes its state event, as in Choria, where such
// a self-transition does nothing. success_transition and fail_transition
// are not used.
//
// The plugin runs every interval (there is no default: without an interval
// it runs only when forced), when the machine starts in a state the watcher
// runs in, and whenever the machine enters the state FORCE_CHECK, even
// though Choria's check machines leave FORCE_CHECK out of state_match.
// Other transitions do not run it (Choria's rule; a machine moving between
// OK and CRITICAL must not re-run its own check). Choria delays the first
// check by a random part of the interval; mms runs it at once.
//
// The plugin runs like an exec command (see
// github.com/mms-io/mms/watchers/internal/command): no shell, from the
// machine directory, with the watcher environment. Its output is what it
// printed on stdout (stderr when stdout is empty), trimmed; Choria reads
// both streams together. Performance data after '|' is parsed into
// perfdata (see github.com/mms-io/mms/watchers/internal/perfdata).
//
// # Properties
//
// plugin is the command line; it may be a template (rendered once, when the
// machine loads; see github.com/mms-io/mms/watchers/render), with Choria's
// Scout override function o KEY DEFAULT. mms has no Scout overrides file,
// so o gives its DEFAULT, as Choria's does when no overrides file is
// configured. builtin "heartbeat" instead of a plugin is always OK and
// prints the time. Choria's other builtins are refused when the machine
// loads, with what to use instead: goss (run goss as a plugin:
// `goss -g FILE validate --format nagios`) and choria_status (a Choria
// server's status file; an mms agent reports with `mms status`); so are
// gossfile, last_message, pubcert_expire and token_expire, which only those
// builtins use.
//
// # Events
//
// The state event carries Choria's fields: plugin, status, status_code,
// output, check_time (unix seconds), perfdata, runtime (seconds), history
// (the last 15 results, oldest first) and annotations.
//
// # Prometheus
//
// With Deps.Metrics the watcher exports Choria's series, labelled with the
// machine's name: choria_machine_nagios_watcher_status{name,status} (the
// status code), choria_machine_nagios_watcher_last_run_seconds{name} (unix
// time of the last check) and choria_machine_nagios_watcher_checks_count
// {name}. When something else moves the machine to OK, WARNING, CRITICAL
// or UNKNOWN, the status follows it, as in Choria.
package nagioswatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/internal/command"
	"github.com/mms-io/mms/watchers/internal/perfdata"
	"github.com/mms-io/mms/watchers/render"
)

// Limits and defaults.
const (
	// DefaultTimeout is how long the plugin may run when timeout is unset
	// (Choria's documented default; its code uses 1s).
	DefaultTimeout = command.DefaultTimeout
	// MaxTimeout is the longest timeout accepted.
	MaxTimeout = command.MaxTimeout
	// HistorySize is how many results the event's history keeps.
	HistorySize = 15
	// MaxOutput is how much of the plugin's stdout is read.
	MaxOutput = 64 << 10
	// ForceCheckState is the state whose entry forces a check.
	ForceCheckState = "FORCE_CHECK"
)

// Status is a Nagios result.
type Status int

// The Nagios results, numbered like the plugin exit statuses.
const (
	OK Status = iota
	Warning
	Critical
	Unknown
)

var statusNames = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// String returns the Nagios name of s: OK, WARNING, CRITICAL or UNKNOWN.
func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return statusNames[Unknown]
	}
	return statusNames[s]
}

// statusOf maps an exit status to a result; anything unknown is UNKNOWN.
func statusOf(code int) Status {
	if code >= 0 && code <= int(Unknown) {
		return Status(code)
	}
	return Unknown
}

// builtins are the builtin checks: the supported one is nil, the refused
// ones say what to use instead.
var builtins = map[string]error{
	"heartbeat":     nil,
	"goss":          errors.New(`goss is not supported: run goss as a plugin, for example plugin: "goss -g goss.yaml validate --format nagios"`),
	"choria_status": errors.New("choria_status checks a Choria server's status file, which an mms node does not have: check the agent with `mms status`, or run a plugin"),
}

func init() {
	watchers.Register(watchers.Info{
		Type:        "nagios",
		Version:     "v1",
		New:         func() watchers.Watcher { return new(Watcher) },
		MinInterval: watchers.Duration(500 * time.Millisecond),
		Timeout:     watchers.Duration(MaxTimeout + time.Minute),
	})
}

// overrides is Choria's Scout override function: mms has no overrides
// file, so it gives the default.
var overrides = template.FuncMap{
	"o": func(_ string, dflt any) string { return fmt.Sprint(dflt) },
}

// Watcher is the nagios watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// Plugin is the plugin's command line, split like a shell would split
	// it, without a shell; it may be a template, and what a template
	// action prints is always part of exactly one word. One of plugin and
	// builtin is required.
	Plugin string `json:"plugin,omitempty"`
	// Builtin names a check built into the watcher instead of a plugin:
	// heartbeat (always OK). Choria's goss and choria_status are refused.
	Builtin string `json:"builtin,omitempty"`
	// Timeout is how long the plugin may run before it is killed and the
	// result is UNKNOWN; at most 1h.
	Timeout watchers.Duration `json:"timeout,omitzero" default:"10s"`
	// Annotations are copied into every state event.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Gossfile is the goss builtin's specification; refused with it.
	Gossfile string `json:"gossfile,omitempty"`
	// LastMessage belongs to the choria_status builtin; refused with it.
	LastMessage watchers.Duration `json:"last_message,omitzero"`
	// PubcertExpire belongs to the choria_status builtin; refused.
	PubcertExpire watchers.Duration `json:"pubcert_expire,omitzero"`
	// TokenExpire belongs to the choria_status builtin; refused.
	TokenExpire watchers.Duration `json:"token_expire,omitzero"`

	timeout time.Duration
	argv    []string // the rendered plugin split, set by Provision

	deps watchers.Deps
	env  *command.Env
	log  *slog.Logger

	// Check's state; StateChanged is never called concurrently with Check.
	poked     bool // StateChanged ran since the last check
	force     bool // the machine entered FORCE_CHECK
	lastCheck time.Time
	status    Status
	checked   bool // a check (or a mirrored state) set status
	checks    int
	history   []Execution
}

// Execution is one entry of the event's history.
type Execution struct {
	// Executed is when the check started.
	Executed time.Time `json:"execute"`
	// Status is the result's code.
	Status int `json:"status"`
	// PerfData is the check's performance data.
	PerfData []perfdata.Item `json:"perfdata,omitempty"`
}

// State is the type-specific part of the nagios watcher's state event:
// Choria's fields.
type State struct {
	Plugin      string            `json:"plugin"`
	Status      string            `json:"status"`
	StatusCode  int               `json:"status_code"`
	Output      string            `json:"output"`
	CheckTime   int64             `json:"check_time"`
	PerfData    []perfdata.Item   `json:"perfdata"`
	RunTime     float64           `json:"runtime"`
	History     []Execution       `json:"history"`
	Annotations map[string]string `json:"annotations"`
}

// Validate checks the properties.
func (w *Watcher) Validate() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, fmt.Errorf("%s: %w", field, err)) }
	switch {
	case w.Plugin != "" && w.Builtin != "":
		add("plugin", errors.New("set plugin or builtin, not both"))
	case w.Plugin == "" && w.Builtin == "":
		add("plugin", errors.New("required (or builtin)"))
	case w.Plugin != "":
		if _, err := command.CheckLine(w.Plugin, overrides); err != nil {
			add("plugin", err)
		}
	}
	if w.Builtin != "" {
		if refused, ok := builtins[w.Builtin]; !ok {
			add("builtin", fmt.Errorf("unknown builtin %q: the one mms has is heartbeat", w.Builtin))
		} else if refused != nil {
			add("builtin", refused)
		}
	}
	if w.Gossfile != "" {
		add("gossfile", errors.New("only used by the goss builtin, which is not supported: run goss as a plugin with -g and --format nagios"))
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"last_message", w.LastMessage != 0}, {"pubcert_expire", w.PubcertExpire != 0}, {"token_expire", w.TokenExpire != 0}} {
		if f.set {
			add(f.name, errors.New("only used by the choria_status builtin, which is not supported"))
		}
	}
	var err error
	if w.timeout, err = command.Timeout(w.Timeout); err != nil {
		add("timeout", err)
	}
	return errors.Join(errs...)
}

// Provision renders the plugin's command line and keeps the dependencies.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.deps, w.log = d, d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.status = Unknown
	if w.Plugin == "" {
		return nil
	}
	line := w.Plugin
	var err error
	if render.Has(w.Plugin) {
		w.argv, line, err = command.RenderLine(render.NewRenderer(d, overrides), w.Plugin)
	} else {
		w.argv, err = command.Split(w.Plugin)
	}
	if err != nil {
		return fmt.Errorf("plugin: %w", err)
	}
	w.Plugin = line
	if w.env, err = command.NewEnv(d); err != nil {
		return err
	}
	return nil
}

// ExtraStates makes the Runner run the watcher in FORCE_CHECK.
func (w *Watcher) ExtraStates() []string { return []string{ForceCheckState} }

// StateChanged notes a transition: entering FORCE_CHECK forces the next
// check; entering OK, WARNING, CRITICAL or UNKNOWN by other means sets the
// exported status, as in Choria.
func (w *Watcher) StateChanged(bool) {
	w.poked = true
	if w.deps.State == nil {
		return
	}
	state := w.deps.State()
	if state == ForceCheckState {
		w.force = true
		return
	}
	if i := slices.Index(statusNames[:], state); i >= 0 && (Status(i) != w.status || !w.checked) {
		w.status, w.checked = Status(i), true
		w.export()
	}
}

// Check runs the plugin when it is due, and fires the transition named like
// its result.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	now := time.Now()
	poked, force := w.poked, w.force
	w.poked, w.force = false, false
	if poked && !force && !w.lastCheck.IsZero() {
		// A transition, not the interval, asked: not a reason to check.
		if w.deps.Interval > 0 {
			if due := w.lastCheck.Add(w.deps.Interval).Sub(now); due > 0 {
				return watchers.Result{Outcome: watchers.Unchanged, After: due}, nil
			}
		} else {
			return watchers.Result{Outcome: watchers.Unchanged}, nil
		}
	}

	status, output, items, runTime := w.run(ctx, now)
	if ctx.Err() != nil {
		return watchers.Result{}, ctx.Err()
	}
	w.lastCheck = now
	w.status, w.checked = status, true
	w.checks++
	w.history = append(w.history, Execution{Executed: now.UTC(), Status: int(status), PerfData: items})
	if n := len(w.history) - HistorySize; n > 0 {
		w.history = slices.Delete(w.history, 0, n)
	}
	w.export()

	st := State{
		Plugin: w.plugin(), Status: status.String(), StatusCode: int(status), Output: output,
		CheckTime: now.Unix(), PerfData: items, RunTime: runTime.Seconds(),
		History: slices.Clone(w.history), Annotations: w.Annotations,
	}
	if st.Annotations == nil {
		st.Annotations = map[string]string{}
	}
	res := watchers.Result{Outcome: watchers.Failure, State: st, Transition: status.String()}
	if status == OK {
		res.Outcome = watchers.Success
	}
	if w.deps.State != nil && w.deps.State() == status.String() {
		// Already there: Choria's self-transition does nothing.
		res.Outcome, res.Transition = watchers.Report, ""
	}
	return res, nil
}

// plugin is what the event names as the plugin.
func (w *Watcher) plugin() string {
	if w.Builtin != "" {
		return w.Builtin
	}
	return w.Plugin
}

// run runs the check and returns its result.
func (w *Watcher) run(ctx context.Context, now time.Time) (Status, string, []perfdata.Item, time.Duration) {
	if w.Builtin == "heartbeat" {
		return OK, strconv.FormatInt(now.Unix(), 10), nil, 0
	}
	out, err := w.env.Run(ctx, command.Spec{Line: w.Plugin, Argv: w.argv, Timeout: w.timeout, MaxStdout: MaxOutput})
	if err != nil {
		w.log.Warn("nagios plugin did not run to its end", "plugin", w.Plugin, "error", err)
		return Unknown, err.Error(), nil, out.RunTime
	}
	text := strings.TrimSpace(string(out.Stdout))
	if text == "" {
		text = strings.TrimSpace(out.Stderr)
	}
	return statusOf(out.ExitCode), text, perfdata.Parse(text), out.RunTime
}

// export hands the status to the node's Prometheus endpoint.
func (w *Watcher) export() {
	if w.deps.Metrics == nil {
		return
	}
	name := w.deps.Machine
	samples := []watchers.Sample{{
		Name: "choria_machine_nagios_watcher_status", Help: "Choria Nagios Check Status",
		Labels: map[string]string{"name": name, "status": w.status.String()}, Value: float64(w.status),
	}}
	if !w.lastCheck.IsZero() {
		samples = append(samples,
			watchers.Sample{Name: "choria_machine_nagios_watcher_last_run_seconds", Help: "Choria Nagios Check Time",
				Labels: map[string]string{"name": name}, Value: float64(w.lastCheck.Unix())},
			watchers.Sample{Name: "choria_machine_nagios_watcher_checks_count", Help: "Choria Nagios Check Count",
				Labels: map[string]string{"name": name}, Value: float64(w.checks), Counter: true})
	}
	w.deps.Metrics.Set(samples)
}

// Close removes the watcher's series from the Prometheus endpoint.
func (w *Watcher) Close() error {
	if w.deps.Metrics != nil {
		w.deps.Metrics.Set(nil)
	}
	return nil
}

var (
	_ watchers.Watcher       = (*Watcher)(nil)
	_ watchers.Validator     = (*Watcher)(nil)
	_ watchers.Provisioner   = (*Watcher)(nil)
	_ watchers.StateObserver = (*Watcher)(nil)
	_ watchers.StateExtender = (*Watcher)(nil)
	_ watchers.Closer        = (*Watcher)(nil)
)
