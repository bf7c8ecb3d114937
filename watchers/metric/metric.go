// Package metricwatcher is the "metric" watcher: it runs a command every
// interval, reads the metrics it prints (see [Parse]: Choria's JSON format,
// or Nagios performance data) and publishes them in its state event, for
// Prometheus (through Deps.Metrics) and, when asked, to Graphite and the
// machine data. It reads Choria's metric properties and publishes Choria's
// metric events.
//
// # Checks
//
// Every run publishes a state event whose metrics field is Choria's
// {labels, metrics, time}: the command's labels, then the labels property
// (which wins), the metrics plus choria_runtime_seconds (how long the
// command ran), and the unix time. A successful run fires no transition.
// Output that does not parse fires the fail_transition, as in Choria; so
// does a command that fails (cannot start, times out, exits non-zero),
// which Choria ignores silently.
//
// The command runs like an exec command (see
// github.com/mms-io/mms/watchers/internal/command): no shell, from the
// machine directory, with the watcher environment, and only its stdout is
// parsed (Choria parses stdout and stderr together). It may be a template,
// rendered once when the machine loads (see
// github.com/mms-io/mms/watchers/render).
//
// # Interval
//
// Choria reads the interval from properties.interval (at least 1s, and the
// watcher's own interval is ignored); so does mms when it is set, else the
// watcher's interval, else one minute (Choria runs every second when
// properties.interval is unset). Choria delays the first run by a random
// part of the interval; mms runs it at once.
//
// # Outputs
//
//   - Prometheus: with Deps.Metrics and without skip_prometheus, each metric
//     is a gauge choria_machine_metric_watcher_<watcher>_<metric> labelled
//     with the metric's labels, names and values lowercased with spaces,
//     commas and quotes made '_', as Choria writes them; mms adds a machine
//     label (the machine's name), so two machines' watchers of one name do
//     not collide.
//   - Graphite: with graphite_host and graphite_port, each metric and
//     runtime are sent as "<graphite_prefix>.<name> <value> <time>" lines
//     over TCP (prefix default choria.<watcher>); a failed send is logged
//     and noted in the event as graphite_error, and does not fail the run.
//   - Machine data: with store, the machine data key "metric" holds a map of
//     watcher name to its last Metric. Choria replaces the whole map on
//     every run, so two metric watchers of one machine erase each other;
//     mms updates its own entry (two watchers storing at the same instant
//     may still lose one update until that watcher's next run).
//
// Choria's http property (a per-machine HTTP endpoint, never wired in a
// Choria server) is refused when true.
package metricwatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/internal/command"
	"github.com/mms-io/mms/watchers/render"
)

// Limits and defaults.
const (
	// DefaultInterval is how often the command runs when neither
	// properties.interval nor the watcher's interval is set.
	DefaultInterval = time.Minute
	// MinInterval is the shortest interval accepted (Choria's).
	MinInterval = time.Second
	// DefaultTimeout is how long the command may run when timeout is unset.
	DefaultTimeout = command.DefaultTimeout
	// MaxTimeout is the longest timeout accepted.
	MaxTimeout = command.MaxTimeout
	// MaxOutput is how much of the command's stdout is read.
	MaxOutput = 1 << 20
	// DataKey is the machine data key store writes.
	DataKey = "metric"
	// RuntimeMetric is the metric holding the command's run time.
	RuntimeMetric = "choria_runtime_seconds"
	// graphiteTimeout bounds a send to Graphite.
	graphiteTimeout = 2 * time.Second
)

func init() {
	watchers.Register(watchers.Info{
		Type:            "metric",
		Version:         "v1",
		New:             func() watchers.Watcher { return new(Watcher) },
		DefaultInterval: watchers.Duration(DefaultInterval),
		MinInterval:     watchers.Duration(MinInterval),
		Timeout:         watchers.Duration(MaxTimeout + time.Minute),
	})
}

// Port is a TCP port given as a number or a string (Choria's graphite_port
// is a string, which YAML users write as a number).
type Port string

// UnmarshalJSON accepts a JSON number or string.
func (p *Port) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("want a port number")
		}
		s = n.String()
	}
	*p = Port(s)
	return nil
}

// Watcher is the metric watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// Command is the command line that prints the metrics, split like a
	// shell would split it, without a shell; it may be a template, and what
	// a template action prints is always part of exactly one word.
	// Required.
	Command string `json:"command"`
	// Interval is how often the command runs; it wins over the watcher's
	// interval. At least 1s.
	Interval watchers.Duration `json:"interval,omitzero" default:"the watcher's interval, else 1m"`
	// Timeout is how long the command may run; at most 1h (an mms
	// addition: Choria allows one second).
	Timeout watchers.Duration `json:"timeout,omitzero" default:"10s"`
	// Labels are added to every metric's labels, replacing the command's.
	Labels map[string]string `json:"labels,omitempty"`
	// SkipPrometheus keeps the metrics out of the node's Prometheus
	// endpoint.
	SkipPrometheus bool `json:"skip_prometheus,omitempty"`
	// Store keeps the last metric in the machine data, under
	// metric.<watcher name>.
	Store bool `json:"store,omitempty"`
	// HTTP (Choria: serve the metric on the machine HTTP port) is not
	// supported; true is refused.
	HTTP bool `json:"http,omitempty"`
	// GraphiteHost is the Graphite server metrics are also sent to (with
	// graphite_port); it may be a template.
	GraphiteHost string `json:"graphite_host,omitempty"`
	// GraphitePort is the Graphite server's plaintext port; it may be a
	// template.
	GraphitePort Port `json:"graphite_port,omitempty"`
	// GraphitePrefix starts every Graphite metric name; it may be a
	// template.
	GraphitePrefix string `json:"graphite_prefix,omitempty" default:"choria.<watcher name>"`

	timeout time.Duration
	argv    []string // the rendered command split, set by Provision

	deps    watchers.Deps
	env     *command.Env
	log     *slog.Logger
	metrics watchers.MetricsSink
	// graphite is the rendered host:port, "" when not sending.
	graphite string
	prefix   string
}

// State is the type-specific part of the metric watcher's state event.
type State struct {
	// Metrics is Choria's metric document.
	Metrics Metric `json:"metrics"`
	// GraphiteError says why the metrics could not be sent to Graphite.
	GraphiteError string `json:"graphite_error,omitempty"`
}

// Validate checks the properties.
func (w *Watcher) Validate() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, fmt.Errorf("%s: %w", field, err)) }
	switch {
	case strings.TrimSpace(w.Command) == "":
		add("command", errors.New("required"))
	default:
		if _, err := command.CheckLine(w.Command); err != nil {
			add("command", err)
		}
	}
	if w.Interval != 0 && w.Interval.Std() < MinInterval {
		add("interval", fmt.Errorf("%v is below the minimum %v", w.Interval, MinInterval))
	}
	var err error
	if w.timeout, err = command.Timeout(w.Timeout); err != nil {
		add("timeout", err)
	}
	if w.HTTP {
		add("http", errors.New("not supported: mms serves no per-machine HTTP endpoint; the metrics are in the state event and, unless skip_prometheus, on the node's Prometheus endpoint"))
	}
	for _, f := range []struct{ name, value string }{
		{"graphite_host", w.GraphiteHost}, {"graphite_port", string(w.GraphitePort)}, {"graphite_prefix", w.GraphitePrefix},
	} {
		if render.Has(f.value) {
			if err := render.Check(f.value); err != nil {
				add(f.name, err)
			}
		}
	}
	if !render.Has(string(w.GraphitePort)) && w.GraphitePort != "" {
		if _, err := parsePort(string(w.GraphitePort)); err != nil {
			add("graphite_port", err)
		}
	}
	return errors.Join(errs...)
}

// parsePort parses a TCP port number.
func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// Provision renders the templates and keeps the dependencies.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.deps, w.log = d, d.Log
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.Store && d.Data == nil {
		return errors.New("store: the machine has no data store")
	}
	if !w.SkipPrometheus {
		w.metrics = d.Metrics
	}
	r := render.NewRenderer(d)
	var err error
	if render.Has(w.Command) {
		w.argv, _, err = command.RenderLine(r, w.Command)
	} else {
		w.argv, err = command.Split(w.Command)
	}
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	if w.env, err = command.NewEnv(d); err != nil {
		return err
	}
	w.prefix = w.GraphitePrefix
	if w.prefix == "" {
		w.prefix = "choria." + strings.ReplaceAll(d.Watcher, " ", "-")
	}
	if w.prefix, err = r.String(w.prefix); err != nil {
		return fmt.Errorf("graphite_prefix: %w", err)
	}
	if w.GraphiteHost != "" && w.GraphitePort != "" {
		host, err := r.String(w.GraphiteHost)
		if err != nil {
			return fmt.Errorf("graphite_host: %w", err)
		}
		ps, err := r.String(string(w.GraphitePort))
		if err != nil {
			return fmt.Errorf("graphite_port: %w", err)
		}
		port, err := parsePort(ps)
		if err != nil {
			return fmt.Errorf("graphite_port: %w", err)
		}
		w.graphite = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return nil
}

// Check runs the command and publishes what it printed.
func (w *Watcher) Check(ctx context.Context) (watchers.Result, error) {
	res := watchers.Result{After: w.Interval.Std()}
	out, err := w.env.Run(ctx, command.Spec{Line: w.Command, Argv: w.argv, Timeout: w.timeout, MaxStdout: MaxOutput})
	switch {
	case err != nil:
		return res, err
	case out.ExitCode != 0:
		return res, fmt.Errorf("run %q: exit status %d: %s", w.Command, out.ExitCode, strings.TrimSpace(out.Stderr))
	case out.StdoutOverflow:
		return res, fmt.Errorf("run %q: output longer than %d bytes", w.Command, MaxOutput)
	}
	m, err := Parse(out.Stdout)
	if err != nil {
		res.Outcome = watchers.Failure
		res.State = State{Metrics: Metric{Labels: map[string]string{}, Metrics: map[string]float64{}}}
		return res, fmt.Errorf("parse the output of %q: %w", w.Command, err)
	}
	m.Time = time.Now().Unix()
	maps.Copy(m.Labels, w.Labels)
	m.Metrics[RuntimeMetric] = out.RunTime.Seconds()

	st := State{Metrics: m}
	w.export(m)
	if err := w.sendGraphite(ctx, m); err != nil {
		w.log.Warn("send metrics to graphite", "address", w.graphite, "error", err)
		st.GraphiteError = err.Error()
	}
	if w.Store {
		if err := w.store(m); err != nil {
			return res, fmt.Errorf("store: %w", err)
		}
	}
	res.Outcome, res.State = watchers.Report, st
	return res, nil
}

// promName is Choria's Prometheus name cleaning: lowercase, with spaces,
// commas and quotes made '_'.
func promName(s string) string {
	return strings.NewReplacer(" ", "_", ",", "_", `"`, "_").Replace(strings.ToLower(s))
}

// export hands the metrics to the node's Prometheus endpoint.
func (w *Watcher) export(m Metric) {
	if w.metrics == nil {
		return
	}
	labels := map[string]string{"machine": w.deps.Machine}
	for k, v := range m.Labels {
		labels[promName(k)] = promName(v)
	}
	var samples []watchers.Sample
	for _, name := range slices.Sorted(maps.Keys(m.Metrics)) {
		samples = append(samples, watchers.Sample{
			Name:   "choria_machine_metric_watcher_" + promName(w.deps.Watcher) + "_" + name,
			Help:   "Choria Metric",
			Labels: labels,
			Value:  m.Metrics[name],
		})
	}
	w.metrics.Set(samples)
}

// sendGraphite sends the metrics to Graphite's plaintext protocol.
func (w *Watcher) sendGraphite(ctx context.Context, m Metric) error {
	if w.graphite == "" || len(m.Metrics) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, graphiteTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", w.graphite)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m.Metrics)) {
		metric := name
		if name == RuntimeMetric {
			metric = "runtime" // Choria's name for it in Graphite
		}
		fmt.Fprintf(&b, "%s.%s %f %d\n", w.prefix, metric, m.Metrics[name], m.Time)
	}
	_, err = conn.Write([]byte(b.String()))
	return err
}

// store sets this watcher's entry of the machine data's metric map.
func (w *Watcher) store(m Metric) error {
	all := map[string]any{}
	if v, ok := w.deps.Data.Get(DataKey); ok {
		if old, ok := v.(map[string]any); ok {
			all = maps.Clone(old)
		}
	}
	all[w.deps.Watcher] = m
	return w.deps.Data.Put(DataKey, all)
}

// Close removes the watcher's metrics from the Prometheus endpoint.
func (w *Watcher) Close() error {
	if w.metrics != nil {
		w.metrics.Set(nil)
	}
	return nil
}

var (
	_ watchers.Watcher     = (*Watcher)(nil)
	_ watchers.Validator   = (*Watcher)(nil)
	_ watchers.Provisioner = (*Watcher)(nil)
	_ watchers.Closer      = (*Watcher)(nil)
)
