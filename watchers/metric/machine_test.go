package metricwatcher

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/agent/agenttest"
)

// TestMetricMachine runs a Choria metric machine: a run publishes Choria's
// metric event and fires nothing; output that does not parse fires the
// fail_transition.
func TestMetricMachine(t *testing.T) {
	yaml, err := os.ReadFile(filepath.Join("..", "..", "machine", "testdata", "choria", "metric.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeScript(t, dir, "disk.sh", `if [ -e broken ]; then echo '{"metrics":{"free":"lots"}}'; exit 0; fi
echo "{\"labels\":{\"mount\":\"$1\"},\"metrics\":{\"free\":42}}"`)
	m, rec := agenttest.Start(t, string(yaml), agenttest.Options{Dir: dir})
	typ := agenttest.StateEventType("metric")
	agenttest.Eventually(t, func() error {
		if n := len(rec.Find(typ, nil)); n != 1 {
			return fmt.Errorf("metric events = %d, want 1", n)
		}
		return nil
	})
	ev := rec.Find(typ, nil)[0]
	for k, v := range map[string]any{"protocol": typ, "type": "metric", "machine": "disk_metrics", "name": "disk", "outcome": "report"} {
		if ev[k] != v {
			t.Errorf("event %s = %v, want %v", k, ev[k], v)
		}
	}
	metrics := ev["metrics"].(map[string]any)
	if fmt.Sprint(metrics["labels"]) != "map[dc:london format:choria mount:/]" || metrics["metrics"].(map[string]any)["free"] != 42.0 || metrics["time"] == nil {
		t.Errorf("event metrics = %v", metrics)
	}
	if n := len(rec.Find(agent.TransitionEventType, nil)); n != 0 || m.State() != "collecting" {
		t.Errorf("after a good run: %d transitions, state %s; want none, collecting", n, m.State())
	}

	// Output that does not parse: the fail_transition fires, with an event
	// carrying the error.
	if err := os.WriteFile(filepath.Join(dir, "broken"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Transition(t.Context(), "broken"); err != nil {
		t.Fatal(err)
	}
	if err := m.Transition(t.Context(), "repaired"); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, func() error {
		if s := m.State(); s != "broken" || len(rec.Find(typ, map[string]any{"outcome": "error"})) != 1 {
			return fmt.Errorf("state %s, error events %d; want broken after the run that did not parse", s, len(rec.Find(typ, map[string]any{"outcome": "error"})))
		}
		return nil
	})
}
