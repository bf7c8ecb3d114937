package main

import (
	"fmt"
	"regexp"
	"strings"
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
	server := []string{"--server", a.url}
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
