package metricwatcher

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/internal/proptest"
	"github.com/mms-io/mms/watchers/promexport"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []proptest.Case{
	{Name: "minimal", Props: `{"command":"./metric.sh"}`},
	{Name: "everything", Props: `{"command":"./metric.sh","interval":"10s","timeout":"5s","labels":{"dc":"one"},"skip_prometheus":true,"store":true,"http":false,"graphite_host":"graphite","graphite_port":"2003","graphite_prefix":"nodes.x"}`},
	{Name: "port as a number", Props: `{"command":"x","graphite_host":"g","graphite_port":2003}`},
	{Name: "templates", Props: `{"command":"./m.sh {{ .Identity }}","graphite_host":"{{ lookup \"facts.graphite\" \"g\" }}","graphite_port":"{{ lookup \"facts.port\" 2003 }}"}`},
	{Name: "missing command", Props: `{}`, Err: "properties: command: required"},
	{Name: "shell pipe", Props: `{"command":"a | b"}`, Err: `properties: command: shell operator "|": commands run without a shell; quote it to pass it literally, or run sh -c '…'`},
	{Name: "bad template", Props: `{"command":"{{ .Identity"}`, Err: `properties: command: template "{{ .Identity": template: property:1: unclosed action`},
	{Name: "interval too short", Props: `{"command":"x","interval":"500ms"}`, Err: "properties: interval: 500ms is below the minimum 1s"},
	{Name: "timeout too long", Props: `{"command":"x","timeout":"2h"}`, Err: "properties: timeout: 2h0m0s is longer than the maximum 1h0m0s"},
	{Name: "http", Props: `{"command":"x","http":true}`, Err: "properties: http: not supported: mms serves no per-machine HTTP endpoint; the metrics are in the state event and, unless skip_prometheus, on the node's Prometheus endpoint"},
	{Name: "bad port", Props: `{"command":"x","graphite_port":"graph"}`, Err: `properties: graphite_port: "graph" is not a port number (1-65535)`},
	{Name: "port out of range", Props: `{"command":"x","graphite_port":70000}`, Err: `properties: graphite_port: "70000" is not a port number (1-65535)`},
	{Name: "port of the wrong type", Props: `{"command":"x","graphite_port":true}`, Err: "properties: want a port number"},
	{Name: "typo", Props: `{"command":"x","skip_promethus":true}`, Err: `properties: json: unknown field "skip_promethus"`},
}

func TestValidate(t *testing.T) { proptest.Build(t, "metric", validateTests) }

// FuzzDecodeProperties: never a panic; an accepted config has a command, a
// timeout within bounds and no interval below the minimum.
func FuzzDecodeProperties(f *testing.F) {
	proptest.Fuzz(f, "metric", validateTests, func(t *testing.T, b []byte, w watchers.Watcher) {
		mw := w.(*Watcher)
		if strings.TrimSpace(mw.Command) == "" || mw.timeout <= 0 || mw.timeout > MaxTimeout || (mw.Interval != 0 && mw.Interval.Std() < MinInterval) || mw.HTTP {
			t.Fatalf("Build(%q) accepted %+v", b, mw)
		}
	})
}

func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// build returns a metric watcher whose machine directory holds metric.sh
// with body, exporting to a fresh promexport collector.
func build(t *testing.T, props, body string) (*Watcher, watchers.Deps, *promexport.Collector) {
	t.Helper()
	d := watchertest.Deps(t)
	d.Machine, d.Watcher = "facts", "Disk Usage"
	c := promexport.New()
	d.Metrics = c.Sink(d.Machine, d.Watcher)
	writeScript(t, d.Dir, "metric.sh", body)
	return watchertest.BuildWith(t, d, "metric", props).(*Watcher), d, c
}

const choriaJSON = `echo '{"labels":{"Mount":"/ var"},"metrics":{"free":10.5,"used":89.5}}'`

func TestCheck(t *testing.T) {
	w, _, _ := build(t, `{"command":"./metric.sh","labels":{"dc":"one"}}`, choriaJSON)
	before := time.Now().Unix()
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != watchers.Report || res.Transition != "" || res.After != 0 {
		t.Errorf("Check() = outcome %v, transition %q, after %v; want a report, no transition, the Runner's interval", res.Outcome, res.Transition, res.After)
	}
	m := res.State.(State).Metrics
	if m.Time < before || m.Metrics[RuntimeMetric] <= 0 {
		t.Errorf("time %d, runtime %v; want now and the run time", m.Time, m.Metrics[RuntimeMetric])
	}
	delete(m.Metrics, RuntimeMetric)
	want := Metric{Labels: map[string]string{"format": "choria", "Mount": "/ var", "dc": "one"}, Metrics: map[string]float64{"free": 10.5, "used": 89.5}, Time: m.Time}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	// The event's data, as JSON: Choria's metrics field.
	b, err := json.Marshal(res.State)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if keys := fmt.Sprint(sortedKeys(ev["metrics"])); keys != "[labels metrics time]" {
		t.Errorf("metrics field keys = %s, want [labels metrics time]", keys)
	}
}

func sortedKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestCheckIntervalProperty(t *testing.T) {
	w, _, _ := build(t, `{"command":"./metric.sh","interval":"15s"}`, choriaJSON)
	if res, err := w.Check(t.Context()); err != nil || res.After != 15*time.Second {
		t.Errorf("Check() = after %v, %v; want 15s from properties.interval", res.After, err)
	}
}

func TestCheckFailures(t *testing.T) {
	tests := []struct {
		name, body, err string
	}{
		{name: "bad json", body: `echo '{"metrics":{"a":"x"}}'`, err: `parse the output of "./metric.sh": output is not Choria's metric JSON: json: cannot unmarshal string into Go struct field .metrics of type float64`},
		{name: "non-zero exit", body: `echo oops >&2; exit 3`, err: `run "./metric.sh": exit status 3: oops`},
		{name: "too much output", body: `head -c 1048577 /dev/zero`, err: `run "./metric.sh": output longer than 1048576 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _, c := build(t, `{"command":"./metric.sh"}`, tt.body)
			_, err := w.Check(t.Context())
			if got := proptest.ErrString(err); got != tt.err {
				t.Errorf("Check() err = %q, want %q", got, tt.err)
			}
			if got := scrape(t, c); len(got) != 0 {
				t.Errorf("series after a failed run = %v, want none", got)
			}
		})
	}
}

// scrape returns the series c exports, as `name{labels} value` lines.
func scrape(t *testing.T, c *promexport.Collector) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out = append(out, fmt.Sprintf("%s{%s} %g", f.GetName(), strings.Join(ls, ","), m.GetGauge().GetValue()))
		}
	}
	return out
}

func TestPrometheus(t *testing.T) {
	w, _, c := build(t, `{"command":"./metric.sh"}`, choriaJSON)
	if _, err := w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range scrape(t, c) {
		if !strings.Contains(s, "choria_runtime_seconds") {
			got = append(got, s)
		}
	}
	want := []string{
		"choria_machine_metric_watcher_disk_usage_free{format=choria,machine=facts,mount=/_var} 10.5",
		"choria_machine_metric_watcher_disk_usage_used{format=choria,machine=facts,mount=/_var} 89.5",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, c); len(got) != 0 {
		t.Errorf("series after Close = %v, want none", got)
	}

	skip, _, c2 := build(t, `{"command":"./metric.sh","skip_prometheus":true}`, choriaJSON)
	if _, err := skip.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, c2); len(got) != 0 {
		t.Errorf("series with skip_prometheus = %v, want none", got)
	}
}

func TestStore(t *testing.T) {
	w, d, _ := build(t, `{"command":"./metric.sh","store":true}`, `echo 'OK | a=1'`)
	if err := d.Data.Put(DataKey, map[string]any{"other": map[string]any{"kept": true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	v, _ := d.Data.Get(DataKey)
	all := v.(map[string]any)
	mine, ok := all["Disk Usage"].(map[string]any)
	if !ok || all["other"] == nil {
		t.Fatalf("data[metric] = %v, want this watcher's entry next to the other watcher's", all)
	}
	if fmt.Sprint(mine["labels"]) != "map[format:nagios]" || mine["metrics"].(map[string]any)["a"] != 1.0 {
		t.Errorf("data[metric][Disk Usage] = %v", mine)
	}
}

func TestGraphite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan []string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		var got []string
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		lines <- got
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	w, _, _ := build(t, fmt.Sprintf(`{"command":"./metric.sh","graphite_host":%q,"graphite_port":%s}`, host, port), `echo 'OK | a=1 b=2.5'`)
	res, err := w.Check(t.Context())
	if err != nil || res.State.(State).GraphiteError != "" {
		t.Fatalf("Check() = %+v, %v", res.State, err)
	}
	ts := res.State.(State).Metrics.Time
	got := <-lines
	if len(got) != 3 || got[0] != fmt.Sprintf("choria.Disk-Usage.a 1.000000 %d", ts) || got[1] != fmt.Sprintf("choria.Disk-Usage.b 2.500000 %d", ts) || !strings.HasPrefix(got[2], "choria.Disk-Usage.runtime ") {
		t.Errorf("graphite lines = %q", got)
	}

	// A Graphite that is down does not fail the run.
	ln.Close()
	res, err = w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Report || res.State.(State).GraphiteError == "" {
		t.Errorf("Check() with graphite down = %v, %+v, %v; want a report with graphite_error", res.Outcome, res.State, err)
	}
}

func TestTemplateCommand(t *testing.T) {
	w, _, _ := build(t, `{"command":"./metric.sh {{ .Identity }}"}`, `echo "{\"labels\":{\"node\":\"$1\"}}"`)
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.State.(State).Metrics.Labels["node"]; got != "node.example.net" {
		t.Errorf("labels[node] = %q, want the identity rendered into the command", got)
	}
}
