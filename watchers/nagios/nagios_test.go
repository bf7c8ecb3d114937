package nagioswatcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/internal/perfdata"
	"github.com/mms-io/mms/watchers/internal/proptest"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []proptest.Case{
	{Name: "plugin", Props: `{"plugin":"/usr/lib/nagios/plugins/check_load -w 1,1,1 -c 2,2,2"}`},
	{Name: "everything", Props: `{"plugin":"check_x","timeout":"30s","annotations":{"team":"web"}}`},
	{Name: "heartbeat", Props: `{"builtin":"heartbeat"}`},
	{Name: "template", Props: `{"plugin":"check_disk -w {{ o \"warn\" 10 }} -H {{ .Identity }}"}`},
	{Name: "neither", Props: `{}`, Err: "properties: plugin: required (or builtin)"},
	{Name: "both", Props: `{"plugin":"x","builtin":"heartbeat"}`, Err: "properties: plugin: set plugin or builtin, not both"},
	{Name: "blank plugin", Props: `{"plugin":"  "}`, Err: "properties: plugin: no words"},
	{Name: "shell operator", Props: `{"plugin":"check | grep x"}`, Err: `properties: plugin: shell operator "|": commands run without a shell; quote it to pass it literally, or run sh -c '…'`},
	{Name: "bad template", Props: `{"plugin":"check {{ scout }}"}`, Err: `properties: plugin: template "check {{ scout }}": template: property:1: function "scout" not defined`},
	{Name: "goss", Props: `{"builtin":"goss","gossfile":"/etc/goss.yaml"}`, Err: "properties: builtin: goss is not supported: run goss as a plugin, for example plugin: \"goss -g goss.yaml validate --format nagios\"\n" +
		"gossfile: only used by the goss builtin, which is not supported: run goss as a plugin with -g and --format nagios"},
	{Name: "choria_status", Props: `{"builtin":"choria_status","last_message":"1h","pubcert_expire":"24h","token_expire":"24h"}`,
		Err: "properties: builtin: choria_status checks a Choria server's status file, which an mms node does not have: check the agent with `mms status`, or run a plugin\n" +
			"last_message: only used by the choria_status builtin, which is not supported\npubcert_expire: only used by the choria_status builtin, which is not supported\ntoken_expire: only used by the choria_status builtin, which is not supported"},
	{Name: "unknown builtin", Props: `{"builtin":"ping"}`, Err: `properties: builtin: unknown builtin "ping": the one mms has is heartbeat`},
	{Name: "timeout too long", Props: `{"plugin":"x","timeout":"2h"}`, Err: "properties: timeout: 2h0m0s is longer than the maximum 1h0m0s"},
	{Name: "typo", Props: `{"plugn":"x"}`, Err: `properties: json: unknown field "plugn"`},
}

func TestValidate(t *testing.T) { proptest.Build(t, "nagios", validateTests) }

// FuzzDecodeProperties: never a panic, and an accepted config has a
// timeout within bounds and exactly one of plugin and builtin.
func FuzzDecodeProperties(f *testing.F) {
	proptest.Fuzz(f, "nagios", validateTests, func(t *testing.T, b []byte, w watchers.Watcher) {
		nw := w.(*Watcher)
		if nw.timeout <= 0 || nw.timeout > MaxTimeout || (nw.Plugin == "") == (nw.Builtin == "") {
			t.Fatalf("Build(%q) accepted timeout %v, plugin %q, builtin %q", b, nw.timeout, nw.Plugin, nw.Builtin)
		}
	})
}

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// machineState is a settable Deps.State.
type machineState struct {
	mu sync.Mutex
	s  string
}

func (m *machineState) get() string { m.mu.Lock(); defer m.mu.Unlock(); return m.s }
func (m *machineState) set(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = s
}

// sink is a watchers.MetricsSink that keeps the last samples.
type sink struct {
	mu      sync.Mutex
	samples []watchers.Sample
	sets    int
}

func (s *sink) Set(samples []watchers.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples, s.sets = samples, s.sets+1
}

func (s *sink) get() []watchers.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// build returns a nagios watcher with a settable machine state (initially
// state) and a metrics sink.
func build(t *testing.T, props string, state string, prep func(d watchers.Deps)) (*Watcher, *machineState, *sink) {
	t.Helper()
	d := watchertest.Deps(t)
	ms := &machineState{s: state}
	sk := &sink{}
	d.State, d.Metrics, d.Interval = ms.get, sk, time.Minute
	if prep != nil {
		prep(d)
	}
	return watchertest.BuildWith(t, d, "nagios", props).(*Watcher), ms, sk
}

func TestCheckResults(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		state      string // the machine's state before the check
		outcome    watchers.Outcome
		transition string
		status     string
		code       int
		output     string
		perf       []perfdata.Item
	}{
		{name: "ok", script: `echo "OK: fine | load=0.5;1;2"; exit 0`, state: "UNKNOWN",
			outcome: watchers.Success, transition: "OK", status: "OK", code: 0, output: "OK: fine | load=0.5;1;2",
			perf: []perfdata.Item{{Label: "load", Value: 0.5, Warning: "1", Critical: "2"}}},
		{name: "warning", script: `echo "WARNING: hmm"; exit 1`, state: "OK",
			outcome: watchers.Failure, transition: "WARNING", status: "WARNING", code: 1, output: "WARNING: hmm"},
		{name: "critical", script: `echo "CRITICAL: down|rta=5ms"; exit 2`, state: "OK",
			outcome: watchers.Failure, transition: "CRITICAL", status: "CRITICAL", code: 2, output: "CRITICAL: down|rta=5ms",
			perf: []perfdata.Item{{Label: "rta", Value: 5, Unit: "ms"}}},
		{name: "unknown", script: `echo "UNKNOWN: no idea"; exit 3`, state: "OK",
			outcome: watchers.Failure, transition: "UNKNOWN", status: "UNKNOWN", code: 3, output: "UNKNOWN: no idea"},
		{name: "other exit status", script: `echo odd; exit 7`, state: "OK",
			outcome: watchers.Failure, transition: "UNKNOWN", status: "UNKNOWN", code: 3, output: "odd"},
		{name: "stderr when stdout is empty", script: `echo "broken" >&2; exit 2`, state: "OK",
			outcome: watchers.Failure, transition: "CRITICAL", status: "CRITICAL", code: 2, output: "broken"},
		{name: "same state: event, no transition", script: `echo "OK"; exit 0`, state: "OK",
			outcome: watchers.Report, status: "OK", code: 0, output: "OK"},
		{name: "from FORCE_CHECK", script: `echo "OK"; exit 0`, state: "FORCE_CHECK",
			outcome: watchers.Success, transition: "OK", status: "OK", code: 0, output: "OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _, _ := build(t, `{"plugin":"./check.sh","annotations":{"team":"web"}}`, tt.state, func(d watchers.Deps) {
				writeScript(t, d.Dir, "check.sh", tt.script)
			})
			res, err := w.Check(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.outcome || res.Transition != tt.transition {
				t.Errorf("Check() = outcome %v, transition %q; want %v, %q", res.Outcome, res.Transition, tt.outcome, tt.transition)
			}
			st := res.State.(State)
			if st.Plugin != "./check.sh" || st.Status != tt.status || st.StatusCode != tt.code || st.Output != tt.output {
				t.Errorf("state = plugin %q status %q code %d output %q; want ./check.sh, %q, %d, %q", st.Plugin, st.Status, st.StatusCode, st.Output, tt.status, tt.code, tt.output)
			}
			if diff := cmp.Diff(tt.perf, st.PerfData); diff != "" {
				t.Errorf("perfdata (-want +got):\n%s", diff)
			}
			if st.CheckTime <= 0 || st.RunTime <= 0 || len(st.History) != 1 || st.History[0].Status != tt.code || st.Annotations["team"] != "web" {
				t.Errorf("state = %+v, want check_time, runtime, one history entry with status %d, annotations", st, tt.code)
			}
		})
	}
}

func TestCheckFailuresAreUnknown(t *testing.T) {
	t.Run("missing plugin", func(t *testing.T) {
		w, _, _ := build(t, `{"plugin":"./nope.sh"}`, "OK", nil)
		res, err := w.Check(t.Context())
		st := res.State.(State)
		if err != nil || res.Transition != "UNKNOWN" || !strings.Contains(st.Output, "nope.sh") {
			t.Errorf("Check() = %+v, %v; want UNKNOWN with the reason as output", res, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		w, _, _ := build(t, `{"plugin":"sleep 30","timeout":"1s"}`, "OK", nil)
		res, err := w.Check(t.Context())
		st := res.State.(State)
		if err != nil || res.Transition != "UNKNOWN" || !strings.Contains(st.Output, "command timed out after 1s") {
			t.Errorf("Check() = %+v, %v; want UNKNOWN saying it timed out", res, err)
		}
	})
}

func TestHeartbeat(t *testing.T) {
	w, _, _ := build(t, `{"builtin":"heartbeat"}`, "UNKNOWN", nil)
	before := time.Now().Unix()
	res, err := w.Check(t.Context())
	if err != nil || res.Transition != "OK" {
		t.Fatalf("Check() = %+v, %v; want OK", res, err)
	}
	st := res.State.(State)
	if st.Plugin != "heartbeat" || st.Output < fmt.Sprint(before) {
		t.Errorf("state = plugin %q output %q, want heartbeat and the unix time", st.Plugin, st.Output)
	}
}

func TestTemplatePlugin(t *testing.T) {
	w, _, _ := build(t, `{"plugin":"./check.sh {{ o \"warn\" 10 }} {{ .Identity }} {{ lookup \"facts.os.family\" \"\" }}"}`, "UNKNOWN", func(d watchers.Deps) {
		writeScript(t, d.Dir, "check.sh", `echo "args $*"`)
	})
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st := res.State.(State); st.Output != "args 10 node.example.net linux" || st.Plugin != "./check.sh 10 node.example.net linux" {
		t.Errorf("state = plugin %q output %q; want the rendered command line", st.Plugin, st.Output)
	}
}

func TestHistoryKeepsFifteen(t *testing.T) {
	w, ms, _ := build(t, `{"plugin":"./check.sh"}`, "OK", func(d watchers.Deps) {
		writeScript(t, d.Dir, "check.sh", `n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; exit $((n % 4))`)
	})
	var st State
	for i := range 20 {
		res, err := w.Check(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		st = res.State.(State)
		ms.set(st.Status)
		if want := i % 4; st.StatusCode != want {
			t.Fatalf("check %d status = %d, want %d", i, st.StatusCode, want)
		}
	}
	if len(st.History) != HistorySize {
		t.Fatalf("history = %d entries, want %d", len(st.History), HistorySize)
	}
	for i, h := range st.History {
		if want := (i + 5) % 4; h.Status != want {
			t.Errorf("history[%d].status = %d, want %d (oldest first)", i, h.Status, want)
		}
	}
}

func TestOnlyIntervalAndForceCheck(t *testing.T) {
	w, ms, _ := build(t, `{"plugin":"./check.sh"}`, "UNKNOWN", func(d watchers.Deps) {
		writeScript(t, d.Dir, "check.sh", `echo ran >> runs; echo OK`)
	})
	runs := func() int {
		b, _ := os.ReadFile(filepath.Join(w.deps.Dir, "runs"))
		return strings.Count(string(b), "ran")
	}
	w.StateChanged(true) // the Runner's start
	if res, _ := w.Check(t.Context()); res.Transition != "OK" || runs() != 1 {
		t.Fatalf("first check = %+v after %d runs, want the plugin run and OK", res, runs())
	}
	ms.set("OK")
	w.StateChanged(true) // the poke of its own transition
	res, err := w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Unchanged || res.After <= 0 || res.After > time.Minute || runs() != 1 {
		t.Errorf("check poked by a transition = %+v, %v after %d runs; want Unchanged, the rest of the interval as After, no run", res, err, runs())
	}
	ms.set(ForceCheckState)
	w.StateChanged(true)
	if res, _ := w.Check(t.Context()); res.Transition != "OK" || runs() != 2 {
		t.Errorf("check in FORCE_CHECK = %+v after %d runs; want a run and OK", res, runs())
	}
	ms.set("OK")
	// The Runner's interval timer: no StateChanged before the check.
	if res, _ := w.Check(t.Context()); res.Outcome != watchers.Report || runs() != 3 {
		t.Errorf("periodic check = %+v after %d runs; want a run and a report", res, runs())
	}
	if got := w.ExtraStates(); !cmp.Equal(got, []string{"FORCE_CHECK"}) {
		t.Errorf("ExtraStates() = %v, want [FORCE_CHECK]", got)
	}
}

func TestMetrics(t *testing.T) {
	w, ms, sk := build(t, `{"plugin":"./check.sh"}`, "UNKNOWN", func(d watchers.Deps) {
		writeScript(t, d.Dir, "check.sh", `echo CRIT; exit 2`)
	})
	w.StateChanged(true)
	if got := sk.get(); len(got) != 1 || got[0].Labels["status"] != "UNKNOWN" || got[0].Value != 3 {
		t.Errorf("samples at start = %+v, want the UNKNOWN status", got)
	}
	if _, err := w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"choria_machine_nagios_watcher_status": 2, "choria_machine_nagios_watcher_checks_count": 1}
	got := map[string]float64{}
	for _, s := range sk.get() {
		if s.Labels["name"] != "test" {
			t.Errorf("sample %s labels %v, want name=test (the machine)", s.Name, s.Labels)
		}
		got[s.Name] = s.Value
	}
	if got["choria_machine_nagios_watcher_last_run_seconds"] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last_run_seconds = %v, want about now", got["choria_machine_nagios_watcher_last_run_seconds"])
	}
	delete(got, "choria_machine_nagios_watcher_last_run_seconds")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	// Someone else moves the machine to OK: the status follows.
	ms.set("OK")
	w.StateChanged(true)
	if s := sk.get()[0]; s.Labels["status"] != "OK" || s.Value != 0 {
		t.Errorf("status after an outside move to OK = %+v, want OK", s)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sk.get(); got != nil {
		t.Errorf("samples after Close = %v, want none", got)
	}
}

func TestNoDepsState(t *testing.T) {
	d := watchertest.Deps(t)
	w := watchertest.BuildWith(t, d, "nagios", `{"builtin":"heartbeat"}`)
	w.(*Watcher).StateChanged(true)
	res, err := w.Check(t.Context())
	if err != nil || res.Transition != "OK" {
		t.Errorf("Check() without Deps.State = %+v, %v; want OK", res, err)
	}
}
