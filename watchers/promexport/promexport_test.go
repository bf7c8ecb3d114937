package promexport

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mms-io/mms/watchers"
)

// gather scrapes a registry holding c and returns each series as
// `name{k="v",…} TYPE value`, sorted, and the help of each family.
func gather(t *testing.T, c *Collector) ([]string, map[string]string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() = %v", err)
	}
	var out []string
	help := map[string]string{}
	for _, f := range fams {
		help[f.GetName()] = f.GetHelp()
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue()
			if f.GetType().String() == "COUNTER" {
				v = m.GetCounter().GetValue()
			}
			out = append(out, fmt.Sprintf("%s{%s} %s %g", f.GetName(), strings.Join(ls, ","), f.GetType(), v))
		}
	}
	sort.Strings(out)
	return out, help
}

func TestCollect(t *testing.T) {
	c := New()
	c.Sink("m1", "disk").Set([]watchers.Sample{
		{Name: "choria_machine_metric_watcher_disk_free", Help: "Choria Metric", Labels: map[string]string{"mount": "/", "format": "choria"}, Value: 10},
		{Name: "choria_machine_metric_watcher_disk_free", Labels: map[string]string{"mount": "/var", "format": "choria"}, Value: 20},
		{Name: "bad name-with.dots", Labels: map[string]string{"bad label": "x", "__reserved": "y", "1st": "z"}, Value: 1},
		{Name: "checks", Value: 3, Counter: true},
	})
	c.Sink("m2", "disk").Set([]watchers.Sample{
		// The same series as m1's first: dropped.
		{Name: "choria_machine_metric_watcher_disk_free", Help: "other help", Labels: map[string]string{"mount": "/", "format": "choria"}, Value: 99},
		// Same name, other type: dropped.
		{Name: "checks", Value: 5},
		{Name: "invalid_utf8", Labels: map[string]string{"v": "a\xffb"}, Value: 2},
		{Name: "", Value: 7},
	})
	got, help := gather(t, c)
	want := []string{
		`bad_name_with_dots{_1st="z",bad_label="x",x__reserved="y"} GAUGE 1`,
		`checks{} COUNTER 3`,
		`choria_machine_metric_watcher_disk_free{format="choria",mount="/"} GAUGE 10`,
		`choria_machine_metric_watcher_disk_free{format="choria",mount="/var"} GAUGE 20`,
		`invalid_utf8{v="a` + "\uFFFD" + `b"} GAUGE 2`,
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	if help["choria_machine_metric_watcher_disk_free"] != "Choria Metric" || help["checks"] != "checks" {
		t.Errorf("help = %v, want the first sample's, or the name", help)
	}

	// Set replaces, nil removes.
	c.Sink("m1", "disk").Set([]watchers.Sample{{Name: "only", Value: 1}})
	c.Sink("m2", "disk").Set(nil)
	got, _ = gather(t, c)
	if diff := cmp.Diff([]string{`only{} GAUGE 1`}, got); diff != "" {
		t.Errorf("series after replacing (-want +got):\n%s", diff)
	}
}

func TestSinkCopies(t *testing.T) {
	c := New()
	labels := map[string]string{"a": "1"}
	samples := []watchers.Sample{{Name: "x", Labels: labels, Value: 1}}
	c.Sink("m", "w").Set(samples)
	labels["a"] = "changed"
	samples[0].Value = 5
	got, _ := gather(t, c)
	if diff := cmp.Diff([]string{`x{a="1"} GAUGE 1`}, got); diff != "" {
		t.Errorf("series after the caller changed its slice (-want +got):\n%s", diff)
	}
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"ok_name:x": "ok_name:x", "1abc": "_1abc", "a b-c.d": "a_b_c_d", "": "", "ünï": "_n_",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConcurrentSetAndCollect(t *testing.T) {
	c := New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				c.Sink("m", fmt.Sprint(i)).Set([]watchers.Sample{{Name: "v", Labels: map[string]string{"w": fmt.Sprint(i)}, Value: float64(j)}})
			}
		})
	}
	for range 50 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
