package manager_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/spec"
	kvwatcher "github.com/mms-io/mms/watchers/kv"
)

// TestManagerEndToEnd runs one node the way `mms agent` does (an
// agent.Host with the compiled-in manager machine, the kv, machines, exec
// and archive watchers, a real JetStream server and an HTTP archive
// server) and drives it only through signed specs put into KV, checking
// what lands on disk, what the host runs and the events it publishes. The
// steps share the node and run in order; a failed step stops the rest.
func TestManagerEndToEnd(t *testing.T) {
	n := newE2ENode(t)
	records := filepath.Join(n.managerState(), "installed")

	// A machine this agent did not install: it must survive everything.
	handmade := filepath.Join(n.machines, "handmade")
	for p, content := range recordingMachine("handmade", "0.1.0", "handmade", "") {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.MkdirAll(handmade, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(handmade, p), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	handmadeTree := treetest.Snapshot(t, handmade)

	alpha1 := buildArchive(t, n.files, "alpha", "1", recordingMachine("alpha", "1.0.0", "v1", ""))
	alpha2 := buildArchive(t, n.files, "alpha", "2", recordingMachine("alpha", "2.0.0", "v2", ""))
	bravo := buildArchive(t, n.files, "bravo", "1", recordingMachine("bravo", "1.0.0", "bravo", ""))
	charlie := buildArchive(t, n.files, "charlie", "1", recordingMachine("charlie", "1.0.0", "charlie", ""))

	// The governor's stream runs goroutines in the server: create it before
	// taking the goroutine baseline.
	if _, err := governor.Add(t.Context(), n.js, "downloads", 1, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	leaks := goleak.IgnoreCurrent()
	n.start()
	n.waitRunning(t, "handmade", "0.1.0", "running")

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	var acceptedV3 []byte // the last accepted envelope

	step("install and skip", func(t *testing.T) {
		mark := n.events.mark()
		ev, serial := n.apply(t, alpha1.entry(""), bravo.entry("false"))
		wantOutcomes := []string{"alpha=installed", "bravo=skipped"}
		if diff := cmp.Diff(wantOutcomes, ev.outcomes()); diff != "" || ev.Info.Outcome != "success" {
			t.Errorf("machines event for serial %d: outcome %q, results (-want +got):\n%s", serial, ev.Info.Outcome, diff)
		}
		if r, _ := ev.result("alpha"); r.Checksum != alpha1.info.Checksum {
			t.Errorf("alpha result checksum = %q, want %q", r.Checksum, alpha1.info.Checksum)
		}
		if !slices.Equal(ev.State.Machines, []string{"alpha"}) || ev.State.Format != "v2" || ev.State.Digest == "" {
			t.Errorf("machines event state = machines %v format %q digest %q, want [alpha] v2 and a digest", ev.State.Machines, ev.State.Format, ev.State.Digest)
		}
		n.waitRunning(t, "alpha", "1.0.0", "running")
		n.events.waitEvent(t, mark, "alpha start → running transition", func(e seenEvent) bool {
			return e.info.Transition && e.info.Machine == "alpha" && e.info.Name == "recorded" && e.info.From == "start" && e.info.To == "running"
		})
		if _, err := os.Stat(filepath.Join(n.machines, "alpha", "machine.yaml")); err != nil {
			t.Errorf("alpha not installed: %v", err)
		}
		if _, err := os.Stat(filepath.Join(n.machines, "bravo")); !os.IsNotExist(err) {
			t.Errorf("bravo (matcher false) stat = %v, want not installed", err)
		}
		if got := n.machineData(t, "alpha")["ran_v1"]; got != "1.0.0" {
			t.Errorf("alpha data ran_v1 = %v, want 1.0.0 (written by the machine's exec watcher)", got)
		}
		assertNoTemporaries(t, n.machines, records)
	})

	step("update keeps previous and data", func(t *testing.T) {
		v1yaml := readFile(t, filepath.Join(n.machines, "alpha", "machine.yaml"))
		ev, _ := n.apply(t, alpha2.entry(""), bravo.entry("false"))
		if diff := cmp.Diff([]string{"alpha=updated", "bravo=skipped"}, ev.outcomes()); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		n.waitRunning(t, "alpha", "2.0.0", "running")
		if got := readFile(t, filepath.Join(n.machines, ".prev-alpha", "machine.yaml")); got != v1yaml {
			t.Errorf(".prev-alpha/machine.yaml = %q, want v1's %q", got, v1yaml)
		}
		data := n.machineData(t, "alpha")
		if data["ran_v1"] != "1.0.0" || data["ran_v2"] != "2.0.0" {
			t.Errorf("alpha data after the upgrade = %v, want ran_v1 (kept) and ran_v2", data)
		}
		assertNoTemporaries(t, n.machines, records)
	})

	step("tampered file is reinstalled", func(t *testing.T) {
		live := filepath.Join(n.machines, "alpha")
		before := treetest.Snapshot(t, live)
		script := filepath.Join(live, "record.sh")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho '{\"owned\": true}'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		// The manager's machines watcher re-verifies at every check (the
		// files whose metadata changed; all of them hourly). Its interval is
		// 5m, so poke it the way a spec change does.
		mark := n.events.mark()
		if err := n.host.Transition(t.Context(), mmsmanager.MachineName, "spec_changed"); err != nil {
			t.Fatalf("Transition(spec_changed) = %v", err)
		}
		ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool {
			r, _ := e.result("alpha")
			return r.Tampered != ""
		})
		r, _ := ev.result("alpha")
		if r.Outcome != manager.EntryUpdated || !strings.Contains(r.Tampered, "record.sh") || !strings.Contains(r.Reason, "tampered") {
			t.Errorf("alpha result = %+v, want updated, tampered record.sh", r)
		}
		treetest.AssertSame(t, live, before)
		n.waitRunning(t, "alpha", "2.0.0", "running")
		assertNoTemporaries(t, n.machines, records)
	})

	step("version that fails to load is rolled back", func(t *testing.T) {
		// machine.yaml validates (the installer checks it), but the archive
		// watcher cannot create its state_dir on this node, so the host
		// cannot provision it.
		blocker := filepath.Join(t.TempDir(), "not-a-directory")
		if err := os.WriteFile(blocker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		extra := `  - name: payload
    type: archive
    state_match: [running]
    properties:
      source: ` + n.files.srv.URL + `/nothing.tar.gz
      checksum: ` + strings.Repeat("a", 64) + `
      verify_checksum: ` + strings.Repeat("b", 64) + `
      creates: payload
      target: ` + t.TempDir() + `
      allow_http: true
      state_dir: ` + filepath.Join(blocker, "state") + "\n"
		alpha3 := buildArchive(t, n.files, "alpha", "3", recordingMachine("alpha", "3.0.0", "v3", extra))
		live := filepath.Join(n.machines, "alpha")
		before := treetest.Snapshot(t, live)
		mark := n.events.mark()
		env, serial := n.seal(t, alpha3.entry(""), bravo.entry("false"))
		n.put(t, env)
		ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool { return e.State.Serial == serial })
		r, _ := ev.result("alpha")
		if r.Outcome != manager.EntryRolledBack || !strings.Contains(r.Reason, "failed to load") || !strings.Contains(r.Reason, "state_dir") {
			t.Errorf("alpha result = %+v, want rolled_back because state_dir cannot be created", r)
		}
		if ev.Info.Outcome != "success" || !slices.Equal(ev.State.Machines, []string{"alpha"}) {
			t.Errorf("machines event outcome %q machines %v, want success with alpha running", ev.Info.Outcome, ev.State.Machines)
		}
		n.events.waitEvent(t, mark, "host load_failed for alpha", func(e seenEvent) bool {
			return e.info.WatcherType == agent.HostWatcherType && e.info.Machine == "alpha" && e.info.Outcome == agent.HostLoadFailed
		})
		treetest.AssertSame(t, live, before)
		n.waitRunning(t, "alpha", "2.0.0", "running")
		assertNoTemporaries(t, n.machines, records)
		acceptedV3 = env
	})

	step("rejected specs change nothing", func(t *testing.T) { testRejections(t, n, records) })

	step("deleted key purges nothing", func(t *testing.T) {
		machinesBefore, stateBefore := treetest.Snapshot(t, n.machines), treetest.Snapshot(t, n.state)
		mark := n.events.mark()
		if err := n.kv.Delete(t.Context(), mmsmanager.DefaultKey); err != nil {
			t.Fatal(err)
		}
		e := n.events.waitEvent(t, mark, "kv deleted", func(e seenEvent) bool {
			var st kvwatcher.State
			return e.subject == agent.WatcherStateSubject("kv") && e.ev.DataAs(&st) == nil && st.State == kvwatcher.StateDeleted
		})
		if e.info.Machine != mmsmanager.MachineName || e.info.Outcome != "report" {
			t.Errorf("kv deleted event from %q with outcome %q, want %s reporting it", e.info.Machine, e.info.Outcome, mmsmanager.MachineName)
		}
		if err := n.host.Transition(t.Context(), mmsmanager.MachineName, "spec_changed"); err != nil {
			t.Fatal(err)
		}
		n.waitRunning(t, "alpha", "2.0.0", "running")
		treetest.AssertSame(t, n.machines, machinesBefore)
		treetest.AssertSame(t, n.state, stateBefore)
		// The key is back with the accepted spec: nothing to do.
		n.put(t, acceptedV3)
	})

	step("purge", func(t *testing.T) {
		ev, _ := n.apply(t, charlie.entry(""))
		if diff := cmp.Diff([]string{"charlie=installed", "alpha=purged"}, ev.outcomes()); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		n.waitGone(t, "alpha")
		n.waitRunning(t, "charlie", "1.0.0", "running")
		for _, gone := range []string{"alpha", ".prev-alpha"} {
			if _, err := os.Stat(filepath.Join(n.machines, gone)); !os.IsNotExist(err) {
				t.Errorf("stat %s after purge = %v, want it gone", gone, err)
			}
		}
		assertNoTemporaries(t, n.machines, records)

		ev, _ = n.apply(t)
		if diff := cmp.Diff([]string{"charlie=purged"}, ev.outcomes()); diff != "" {
			t.Errorf("empty spec results (-want +got):\n%s", diff)
		}
		n.waitGone(t, "charlie")
		// The purged trees are deleted in the background: wait for that
		// before listing what is left.
		assertNoTemporaries(t, n.machines, records)
		entries, err := os.ReadDir(n.machines)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		if !slices.Equal(left, []string{"handmade"}) {
			t.Errorf("machines dir after the empty spec holds %v, want only the hand-made machine", left)
		}
		treetest.AssertSame(t, handmade, handmadeTree)
		n.waitRunning(t, "handmade", "0.1.0", "running")
	})

	step("governors", func(t *testing.T) {
		governed := alpha1.entry("")
		governed.Governor = "downloads"
		missing := bravo.entry("")
		missing.Governor = "nope"
		ev, _ := n.apply(t, governed, missing, charlie.entry(""))
		if diff := cmp.Diff([]string{"alpha=installed", "bravo=failed", "charlie=installed"}, ev.outcomes()); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		wantReason := `install: enter governor "nope": governor "nope" does not exist: create it with mms governor add nope LIMIT`
		if r, _ := ev.result("bravo"); r.Reason != wantReason {
			t.Errorf("bravo reason = %q, want %q", r.Reason, wantReason)
		}
		if ev.Info.Outcome != "failure" {
			t.Errorf("machines event outcome = %q, want failure (an entry failed)", ev.Info.Outcome)
		}
		info, err := governor.Get(t.Context(), n.js, "downloads")
		if err != nil {
			t.Fatal(err)
		}
		if info.InUse != 0 {
			t.Errorf("governor downloads after the install = %+v, want its slot released", info)
		}
		stream, err := n.js.Stream(t.Context(), governor.Stream("downloads"))
		if err != nil {
			t.Fatal(err)
		}
		if last := stream.CachedInfo().State.LastSeq; last != 1 {
			t.Errorf("governor downloads handed out %d slots, want 1 (alpha's download)", last)
		}
		n.waitRunning(t, "alpha", "1.0.0", "running")
		n.waitRunning(t, "charlie", "1.0.0", "running")
		if _, err := os.Stat(filepath.Join(n.machines, "bravo")); !os.IsNotExist(err) {
			t.Errorf("stat bravo = %v, want nothing installed", err)
		}
		assertNoTemporaries(t, n.machines, records)
	})

	step("restart reinstalls nothing", func(t *testing.T) {
		hits, tree := n.files.requests(), treetest.Snapshot(t, n.machines)
		n.stop()
		if got := n.host.States(); len(got) != 0 {
			t.Errorf("stopped host still reports %v", names(got))
		}
		mark := n.events.mark()
		n.start()
		ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool { return len(e.State.Results) > 0 })
		if diff := cmp.Diff([]string{"alpha=unchanged", "bravo=failed", "charlie=unchanged"}, ev.outcomes()); diff != "" {
			t.Errorf("results after restart (-want +got):\n%s", diff)
		}
		for _, m := range []string{"alpha", "charlie", "handmade"} {
			version := map[string]string{"alpha": "1.0.0", "charlie": "1.0.0", "handmade": "0.1.0"}[m]
			n.waitRunning(t, m, version, "running")
		}
		if diff := cmp.Diff(hits, n.files.requests()); diff != "" {
			t.Errorf("downloads after restart (-before +after):\n%s", diff)
		}
		treetest.AssertSame(t, n.machines, tree)
	})

	n.stop()
	goleak.VerifyNone(t, leaks)
}

// readFile returns path's content.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// specAt is a spec of serial issued at issued (and expiring at expires
// when set) with machines ms.
func specAt(serial uint64, issued, expires time.Time, ms ...spec.Machine) *spec.Spec {
	return &spec.Spec{Serial: serial, IssuedAt: issued.UTC(), Expires: expires.UTC(), Machines: orNone(ms)}
}
