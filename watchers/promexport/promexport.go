// Package promexport exports what watchers hand to watchers.Deps.Metrics
// (the metric watcher's command output, the nagios watcher's check status)
// as Prometheus metrics.
//
// A node that serves Prometheus metrics builds one [Collector], registers it
// with its prometheus.Registry, and gives each watcher
// Collector.Sink(machine, watcher) as its Deps.Metrics:
//
//	c := promexport.New()
//	reg.MustRegister(c)
//	deps.Metrics = c.Sink("facts", "disk")
//
// The collector is unchecked (it describes nothing up front): its metric
// names come from commands' output. It makes whatever it is given
// acceptable to Prometheus rather than failing a scrape: characters a
// metric or label name may not have become '_', a sample whose series
// (name and labels) another source already gave this scrape is dropped,
// and so is one whose type differs from the first sample of its name; the
// first sample of a name sets its help.
package promexport

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mms-io/mms/watchers"
)

// Collector collects the samples of every sink it handed out. It is a
// prometheus.Collector and safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	samples map[source][]watchers.Sample
}

// source is one watcher of one machine.
type source struct{ machine, watcher string }

// New returns an empty collector.
func New() *Collector {
	return &Collector{samples: map[source][]watchers.Sample{}}
}

// Sink returns the sink of watcher of machine. Sinks of the same pair share
// their samples.
func (c *Collector) Sink(machine, watcher string) watchers.MetricsSink {
	return sink{c: c, src: source{machine, watcher}}
}

type sink struct {
	c   *Collector
	src source
}

// Set replaces the source's samples; nil removes them.
func (s sink) Set(samples []watchers.Sample) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if len(samples) == 0 {
		delete(s.c.samples, s.src)
		return
	}
	cp := make([]watchers.Sample, len(samples))
	for i, x := range samples {
		x.Labels = maps.Clone(x.Labels)
		cp[i] = x
	}
	s.c.samples[s.src] = cp
}

// Describe describes nothing: the collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// family is what the first sample of a name fixed.
type family struct {
	help    string
	counter bool
}

// Collect sends every sample, sources in machine and watcher order.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	snapshot := maps.Clone(c.samples)
	c.mu.Unlock()

	families := map[string]family{}
	seen := map[string]bool{}
	sources := slices.SortedFunc(maps.Keys(snapshot), func(a, b source) int {
		if n := strings.Compare(a.machine, b.machine); n != 0 {
			return n
		}
		return strings.Compare(a.watcher, b.watcher)
	})
	for _, src := range sources {
		for _, s := range snapshot[src] {
			name := Name(s.Name)
			if name == "" {
				continue
			}
			f, ok := families[name]
			if !ok {
				f = family{help: s.Help, counter: s.Counter}
				if f.help == "" {
					f.help = name
				}
				families[name] = f
			} else if f.counter != s.Counter {
				continue
			}
			keys, values := labels(s.Labels)
			series := name + "\xff" + strings.Join(keys, "\xff") + "\xfe" + strings.Join(values, "\xff")
			if seen[series] {
				continue
			}
			seen[series] = true
			typ := prometheus.GaugeValue
			if f.counter {
				typ = prometheus.CounterValue
			}
			m, err := prometheus.NewConstMetric(prometheus.NewDesc(name, f.help, keys, nil), typ, s.Value, values...)
			if err != nil {
				continue
			}
			ch <- m
		}
	}
}

var (
	notName  = regexp.MustCompile(`[^a-zA-Z0-9_:]`)
	notLabel = regexp.MustCompile(`[^a-zA-Z0-9_]`)
)

// Name returns s as a Prometheus metric name: every character outside
// [a-zA-Z0-9_:] becomes '_', and a leading digit gets a '_' before it.
func Name(s string) string {
	s = notName.ReplaceAllString(s, "_")
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		s = "_" + s
	}
	return s
}

// labelName is Name for label names, which may not hold ':' and may not
// start with "__" (reserved); "" when nothing is left.
func labelName(s string) string {
	s = notLabel.ReplaceAllString(s, "_")
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		s = "_" + s
	}
	if strings.HasPrefix(s, "__") {
		s = "x" + s
	}
	return s
}

// labels returns the sanitised label names, sorted, and their values (valid
// UTF-8); of names equal after sanitising, the first in sorted order wins.
func labels(m map[string]string) (keys, values []string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		n := labelName(k)
		if n == "" || slices.Contains(keys, n) {
			continue
		}
		v := m[k]
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		keys, values = append(keys, n), append(values, v)
	}
	return keys, values
}

var _ prometheus.Collector = (*Collector)(nil)
