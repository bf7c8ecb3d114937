package main

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
)

// TestFirstDownloadSaysWhatItApplies: while a node downloads the archive
// of its first spec, mms status says it is applying that serial, with the
// download, instead of "spec missing" from before the spec arrived; mms
// events names the serial and the download every couple of seconds
// (it printed "serial 0" and, later, nothing).
func TestFirstDownloadSaysWhatItApplies(t *testing.T) {
	f := newOperatorFixture(t)
	a := startTestAgent(t, f.pub, f.state)
	server := a.login.flags()
	repo := newStallingRepo(t)
	stalled, started := repo.stalledCopy(repo.publish(t, "1.0.0"), "first")
	writeMachines(t, f.dir, stalled)
	events, _, _ := runUntil(t, append([]string{"events"}, server...)...)
	serial := packPut(t, f.sign, server)
	<-started

	const downloading = `web downloading: \d+\.\d KiB of \d+\.\d KiB \(\d+%\)`
	eventLine := regexp.MustCompile(fmt.Sprintf(`(?m) web1 mms_manager machines machines report: serial %d: %s$`, serial, downloading))
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^web1 +never +%d applying +.* +never applied a spec, applying serial %d: web downloading: .* +behind$`, serial, serial))
	problem := regexp.MustCompile(fmt.Sprintf(`(?m)^  behind: never applied a spec, applying serial %d: %s$`, serial, downloading))
	natstest.Eventually(t, e2eTimeout, func() error {
		if !eventLine.MatchString(events.String()) {
			return fmt.Errorf("mms events has no line matching %s:\n%s", eventLine, events)
		}
		if out := mmsOK(t, "", append([]string{"status"}, server...)...).stdout; !row.MatchString(out) {
			return fmt.Errorf("mms status has no row matching %s:\n%s", row, out)
		}
		node := mmsOK(t, "", append([]string{"status", "web1"}, server...)...).stdout
		if !strings.Contains(node, fmt.Sprintf("\nSeen:      serial %d applying (", serial)) || !problem.MatchString(node) {
			return fmt.Errorf("mms status web1 does not say it applies serial %d:\n%s", serial, node)
		}
		if strings.Contains(node, "spec missing") {
			return fmt.Errorf("mms status web1 says the spec is missing while it downloads it:\n%s", node)
		}
		return nil
	})
	if strings.Contains(events.String(), "serial 0") || strings.Contains(events.String(), "machines report\n") {
		t.Errorf("mms events printed a progress event without its spec:\n%s", events)
	}

	repo.unstall(stalled.Source)
	natstest.Eventually(t, e2eTimeout, func() error {
		out := mms(t, "", append([]string{"status", "--check"}, server...)...).stdout
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^web1 +%d +`, serial)).MatchString(out) {
			return fmt.Errorf("mms status does not show serial %d applied:\n%s", serial, out)
		}
		return nil
	})
}

// TestCtrlCDuringInstallIsNoFailure: Ctrl-C while the agent downloads an
// archive logs that the install and the pass stopped because the agent is
// stopping, at INFO, and exits 0: no ERROR, no retry scheduled (it logged
// "install failed" at ERROR and "retrying failed entries").
func TestCtrlCDuringInstallIsNoFailure(t *testing.T) {
	f := newOperatorFixture(t)
	p := startMMS(t, nil, "agent", "--public-key", strings.TrimSpace(readFile(t, f.pub)), "--state-dir", f.state,
		"--listen", "127.0.0.1:0", "--allow-http", "--identity", "web1")
	p.waitStderr(t, "listening on")
	repo := newStallingRepo(t)
	stalled, started := repo.stalledCopy(repo.publish(t, "1.0.0"), "first")
	writeMachines(t, f.dir, stalled)
	packPut(t, f.sign, loginOf(t, f.state).flags())
	<-started
	p.signal(t, syscall.SIGINT)
	if code := p.wait(t); code != 0 {
		t.Errorf("agent exit code after Ctrl-C = %d, want 0", code)
	}
	log := p.stderr.String()
	for _, want := range []string{
		`level=INFO msg="install stopped before it finished; the installed version (if any) is unchanged" machine=mms_manager watcher=machines watcher_type=machines managed=web cause="interrupt signal received"`,
		`level=INFO msg="reconcile pass stopped: the agent is stopping; it runs again when the agent starts" machine=mms_manager watcher=machines watcher_type=machines serial=`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("agent log lacks %s", want)
		}
	}
	for _, unwanted := range []string{"level=ERROR", "retrying failed entries"} {
		if strings.Contains(log, unwanted) {
			t.Errorf("agent log has %q after Ctrl-C during an install", unwanted)
		}
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", log)
	}
}
