package nagioswatcher

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/agent/agenttest"
	_ "github.com/mms-io/mms/watchers/exec"
)

// TestScoutCheckMachine runs a Choria Scout check machine: the check moves
// it to CRITICAL, the remediation moves it to UNKNOWN, FORCE_CHECK runs the
// check again, which finds it OK. The events are Choria's.
func TestScoutCheckMachine(t *testing.T) {
	yaml, err := os.ReadFile(filepath.Join("..", "..", "machine", "testdata", "choria", "scout-check.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Critical until the remediation ran, then OK.
	writeScript(t, dir, "check_web.sh", `if [ -e restarted ]; then echo "OK: up | rt=0.1s;$2"; exit 0; fi; echo "CRITICAL: down | rt=9s;$2"; exit 2`)
	writeScript(t, dir, "restart_web.sh", `touch restarted`)
	m, rec := agenttest.Start(t, string(yaml), agenttest.Options{Dir: dir})
	typ := agenttest.StateEventType("nagios")

	// CRITICAL → remediate → UNKNOWN; the check does not re-run on that
	// transition (interval 5m), so force it.
	agenttest.Eventually(t, func() error {
		if n := len(rec.Find(agent.TransitionEventType, map[string]any{"transition": "UNKNOWN", "from_state": "CRITICAL"})); n != 1 {
			return fmt.Errorf("remediation transitions = %d, want 1; events: %v", n, rec.Events())
		}
		return nil
	})
	if err := m.Transition(t.Context(), "FORCE_CHECK"); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, func() error {
		if s := m.State(); s != "OK" {
			return fmt.Errorf("state = %s, want OK after the forced check", s)
		}
		return nil
	})
	var got []string
	for _, e := range rec.Find(agent.TransitionEventType, nil) {
		got = append(got, fmt.Sprintf("%s→%s", e["from_state"], e["to_state"]))
	}
	if want := "[UNKNOWN→CRITICAL CRITICAL→UNKNOWN UNKNOWN→FORCE_CHECK FORCE_CHECK→OK]"; fmt.Sprint(got) != want {
		t.Errorf("transitions = %v, want %s", got, want)
	}

	states := rec.Find(typ, nil)
	if len(states) != 2 {
		t.Fatalf("nagios state events = %d, want 2 (one per check)", len(states))
	}
	crit, ok := states[0], states[1]
	for k, v := range map[string]any{
		"protocol": typ, "type": "nagios", "machine": "check_web", "name": "check", "identity": "node1",
		"plugin": "./check_web.sh --warn 80", "status": "CRITICAL", "status_code": 2.0, "output": "CRITICAL: down | rt=9s;80",
	} {
		if crit[k] != v {
			t.Errorf("first event %s = %v, want %v", k, crit[k], v)
		}
	}
	if fmt.Sprint(crit["perfdata"]) != "[map[label:rt unit:s value:9 warning:80]]" || fmt.Sprint(crit["annotations"]) != "map[team:web]" {
		t.Errorf("first event perfdata %v, annotations %v", crit["perfdata"], crit["annotations"])
	}
	for _, k := range []string{"check_time", "runtime", "history", "timestamp", "id", "version"} {
		if _, ok := crit[k]; !ok {
			t.Errorf("first event has no %s", k)
		}
	}
	if ok["status"] != "OK" || len(ok["history"].([]any)) != 2 {
		t.Errorf("second event status %v with %d history entries, want OK with 2", ok["status"], len(ok["history"].([]any)))
	}
}
