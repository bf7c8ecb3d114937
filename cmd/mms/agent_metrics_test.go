package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/nodemetrics"
)

// metricsURL finds the metrics address in an agent's log.
var metricsURL = regexp.MustCompile(`msg="metrics listening" url=(http://\S+)/metrics`)

// TestAgentMetricsShowAppliedSerial runs a real agent process with
// --metrics-listen, puts a spec, and reads /metrics and /healthz with curl,
// as an operator's scraper would.
func TestAgentMetricsShowAppliedSerial(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	_, pub := newKeyPair(t, dir, "ops")
	state := filepath.Join(dir, "state")
	agent := startMMS(t, nil, "agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--identity", "web1", "--allow-http")
	var base string
	natstest.Eventually(t, 30*time.Second, func() error {
		m := metricsURL.FindStringSubmatch(agent.stderr.String())
		if m == nil {
			return errors.New("no metrics address in the log yet:\n" + agent.stderr.String())
		}
		base = m[1]
		return nil
	})
	repo := newArchiveRepo(t)
	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	serial := packPut(t, []string{"--key-file", "ops.key", "--allow-http"}, []string{"--state-dir", state})

	scrape := func(path string) (string, error) {
		out, err := exec.CommandContext(t.Context(), curl, "-sS", "-w", "\n%{http_code}", base+path).Output()
		return string(out), err
	}
	want := fmt.Sprintf(`serial="%d"} 1`, serial) // mms_spec_applied_info{digest=…,format="v2",serial=…} 1
	natstest.Eventually(t, 30*time.Second, func() error {
		out, err := scrape("/metrics")
		if err != nil || !strings.Contains(out, want) || !strings.Contains(out, `mms_machine_state{machine="web",state="ready",version="1.0.0"} 1`) {
			return fmt.Errorf("curl /metrics = %v, want %q and web ready:\n%s", err, want, out)
		}
		return nil
	})
	out, err := scrape("/healthz")
	if err != nil || !strings.HasSuffix(out, "\n200") || !strings.Contains(out, `"ok":true`) {
		t.Errorf("curl /healthz = %q, %v; want 200 ok", out, err)
	}
}

// TestServeMetricsWarnsOffLoopback: a metrics address other machines can
// reach is served with a warning; a loopback one without.
func TestServeMetricsWarnsOffLoopback(t *testing.T) {
	for addr, warns := range map[string]bool{"127.0.0.1:0": false, "0.0.0.0:0": true} {
		var buf syncbuf.Buffer
		stop, err := serveMetrics(addr, nodemetrics.New(nodemetrics.Config{}), slog.New(slog.NewTextHandler(&buf, nil)))
		if err != nil {
			t.Fatal(err)
		}
		stop()
		want := `msg="the metrics server listens on 0.0.0.0: anyone who can reach it reads this node's machines, versions and states, and can hold its connections (at most 32); bind it to 127.0.0.1 or firewall it"`
		if got := strings.Contains(buf.String(), want); got != warns {
			t.Errorf("serveMetrics(%s) logged:\n%s\nwant the warning: %v", addr, buf.String(), warns)
		}
	}
}
