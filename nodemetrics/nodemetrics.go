// Package nodemetrics is the agent's Prometheus endpoint: what the node
// runs (applied spec serial, per-entry outcomes, machine states and
// transitions), how its manager fares (spec outcomes, reconcile errors),
// its NATS connection, what watchers export (the metric and nagios
// watchers, through promexport), and /healthz for supervisors and load
// balancers. It is fed by typed calls (the manager's reports) and by the
// agent's own events, never by polling NATS.
package nodemetrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/promexport"
)

// DefaultMaxDisconnected is how long /healthz stays healthy while NATS is
// away and the client reconnects.
const DefaultMaxDisconnected = 2 * time.Minute

// Config says where the metrics read the node's state.
type Config struct {
	// States returns the running machines (agent.Host.States). Required.
	States func() []agent.MachineStatus
	// NATS returns the connection's health; nil means no NATS metrics and
	// a /healthz that ignores NATS.
	NATS func() natsbox.ConnState
	// Manager is the name of the manager machine /healthz requires to run;
	// empty requires none.
	Manager string
	// MaxDisconnected is how long NATS may be away before /healthz fails;
	// zero means DefaultMaxDisconnected.
	MaxDisconnected time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Metrics holds the node's metrics. It is safe for concurrent use.
type Metrics struct {
	cfg      Config
	reg      *prometheus.Registry
	watchers *promexport.Collector

	applied     prometheus.Gauge
	appliedInfo *prometheus.GaugeVec
	seen        *prometheus.CounterVec
	entries     *prometheus.GaugeVec
	errors      prometheus.Counter
	transitions *prometheus.CounterVec

	mu       sync.Mutex
	outcomes map[manager.EntryOutcome]bool // labels of entries set by the last pass
}

// New returns the node's metrics, registered with a registry of their own
// (plus the Go runtime and process collectors).
func New(cfg Config) *Metrics {
	if cfg.MaxDisconnected <= 0 {
		cfg.MaxDisconnected = DefaultMaxDisconnected
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Metrics{
		cfg:      cfg,
		reg:      prometheus.NewRegistry(),
		watchers: promexport.New(),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mms_spec_applied_serial", Help: "Serial of the spec this node runs (0 before any).",
		}),
		appliedInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mms_spec_applied_info", Help: "1, labelled with the exact serial, digest and format of the spec this node runs (serials above 2^53 lose digits as a gauge's value).",
		}, []string{"serial", "digest", "format"}),
		seen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mms_spec_passes_total", Help: "Reconcile passes by what became of the spec seen: applied, or why it was not (replayed, unknown_key, expired, ...).",
		}, []string{"outcome"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mms_spec_entries", Help: "Spec entries by their outcome in the last reconcile pass (installed, updated, unchanged, skipped, failed, purged, rolled_back).",
		}, []string{"outcome"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mms_reconcile_errors_total", Help: "Reconcile passes that refused the spec or failed an entry.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mms_machine_transitions_total", Help: "Transitions fired, by machine.",
		}, []string{"machine"}),
		outcomes: map[manager.EntryOutcome]bool{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.applied, m.appliedInfo, m.seen, m.entries, m.errors, m.transitions, m.watchers,
		&stateCollector{m: m},
	)
	return m
}

// Registry returns the registry, for collectors a caller adds.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Sink returns the metrics sink of a watcher (watchers.Deps.Metrics).
func (m *Metrics) Sink(machine, watcher string) watchers.MetricsSink {
	return m.watchers.Sink(machine, watcher)
}

// ReportPass records a reconcile pass (it is a manager.StatusReporter).
func (m *Metrics) ReportPass(rep manager.PassReport) {
	m.applied.Set(float64(rep.Applied.Serial))
	if rep.Applied.Digest != "" {
		m.mu.Lock()
		m.appliedInfo.Reset()
		m.appliedInfo.WithLabelValues(strconv.FormatUint(rep.Applied.Serial, 10), rep.Applied.Digest, rep.Applied.Format).Set(1)
		m.mu.Unlock()
	}
	outcome := "applied"
	if rep.Rejected != "" {
		outcome = string(rep.Rejected)
	}
	m.seen.WithLabelValues(outcome).Inc()
	if rep.Failed() {
		m.errors.Inc()
	}
	if rep.Rejected != "" {
		return // the entries are the last accepted spec's
	}
	counts := map[manager.EntryOutcome]int{}
	for _, r := range rep.Machines {
		counts[r.Outcome]++
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for o := range m.outcomes {
		if counts[o] == 0 {
			m.entries.WithLabelValues(string(o)).Set(0)
		}
	}
	for o, n := range counts {
		m.entries.WithLabelValues(string(o)).Set(float64(n))
		m.outcomes[o] = true
	}
}

// Publisher wraps next so the metrics count the transitions it publishes.
func (m *Metrics) Publisher(next agent.Publisher) agent.Publisher {
	return publisher{m: m, next: next}
}

type publisher struct {
	m    *Metrics
	next agent.Publisher
}

func (p publisher) Publish(ctx context.Context, subject string, ev event.Event) error {
	if ev.Type() == agent.TransitionEventType {
		if info, err := agent.ParseEvent(ev); err == nil {
			p.m.transitions.WithLabelValues(info.Machine).Inc()
		}
	}
	return p.next.Publish(ctx, subject, ev)
}

// stateCollector reports, at scrape time, each machine's state and the
// NATS connection.
type stateCollector struct{ m *Metrics }

var (
	machineStateDesc = prometheus.NewDesc("mms_machine_state", "1 for the state each machine is in.", []string{"machine", "version", "state"}, nil)
	machinesDesc     = prometheus.NewDesc("mms_machines", "Machines running on this node.", nil, nil)
	natsUpDesc       = prometheus.NewDesc("mms_nats_connected", "1 while the NATS connection is up.", nil, nil)
	natsReconDesc    = prometheus.NewDesc("mms_nats_reconnects_total", "NATS reconnects since the agent started.", nil, nil)
	natsPermDesc     = prometheus.NewDesc("mms_nats_permission_violations", "Distinct permission violations the NATS server reported.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{machineStateDesc, machinesDesc, natsUpDesc, natsReconDesc, natsPermDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	states := c.m.cfg.States()
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(machineStateDesc, prometheus.GaugeValue, 1, s.Name, s.Version, s.State)
	}
	ch <- prometheus.MustNewConstMetric(machinesDesc, prometheus.GaugeValue, float64(len(states)))
	if c.m.cfg.NATS == nil {
		return
	}
	st := c.m.cfg.NATS()
	up := 0.0
	if st.Connected {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(natsUpDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(natsReconDesc, prometheus.CounterValue, float64(st.Reconnects))
	ch <- prometheus.MustNewConstMetric(natsPermDesc, prometheus.GaugeValue, float64(len(st.PermissionViolations)))
}

// Handler serves /metrics (Prometheus text format) and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", m.healthz)
	return mux
}

// Health is the /healthz answer.
type Health struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

// Check says whether the node is healthy: NATS is connected, or away for
// less than MaxDisconnected and reconnecting, and the manager machine runs.
func (m *Metrics) Check() Health {
	var problems []string
	if m.cfg.NATS != nil {
		st := m.cfg.NATS()
		switch {
		case st.Closed:
			problems = append(problems, "nats: connection closed")
		case !st.Connected && st.DisconnectedAt.IsZero():
			problems = append(problems, "nats: not connected yet")
		case !st.Connected:
			if away := m.cfg.Now().Sub(st.DisconnectedAt); away > m.cfg.MaxDisconnected {
				problems = append(problems, fmt.Sprintf("nats: disconnected for %v (last error: %s)", away.Round(time.Second), st.LastError))
			}
		}
	}
	if m.cfg.Manager != "" {
		running := false
		for _, s := range m.cfg.States() {
			running = running || (s.Name == m.cfg.Manager && s.State != "")
		}
		if !running {
			problems = append(problems, "manager: machine "+m.cfg.Manager+" is not running")
		}
	}
	return Health{OK: len(problems) == 0, Problems: problems}
}

func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	h := m.Check()
	w.Header().Set("Content-Type", "application/json")
	if !h.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}

var (
	_ manager.StatusReporter = (*Metrics)(nil)
	_ prometheus.Collector   = (*stateCollector)(nil)
)
