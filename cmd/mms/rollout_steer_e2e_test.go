package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// failCheck is check.sh of version, which gets healthy on a node unless
// the node's state directory holds a file "fail-<version>" (the machine
// runs in <state>/machines/<name>).
func failCheck(version string) string { return "[ ! -e ../../fail-" + version + " ]" }

// TestSteeringRolloutsAcrossAgents runs ten real agent processes and
// steers rollouts of web through them, each step a signed spec:
//
//  1. 2.0.0 with max_failed 1 and a hold on n09: the node of wave 1 fails
//     its gate and rolls back on its own; the rollout goes on and ends,
//     put --wait exits 0 naming the tolerated failure; n09 keeps 1.0.0
//     throughout, in no wave, shown "held (hold)";
//  2. 3.0.0 failing on a node of wave 1 and one of wave 2: past the
//     budget, the rollout halts at wave 2 and wave 3 keeps 2.0.0;
//  3. mms rollout undo web: the fleet returns to 2.0.0;
//  4. 4.0.0 with a pause between waves: mms rollout pause once wave 1 is
//     healthy stops every other node (also after the pause would have
//     ended); mms rollout resume lets the waves go on to the end;
//  5. mms plan of a spec that installs db on some nodes, skips it on the
//     others, purges cache, keeps web and its hold: every node answers,
//     and after the put each node did what it predicted; a plan of an
//     older spec is refused by every node (exit 2).
func TestSteeringRolloutsAcrossAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ten agent processes")
	}
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%02d.example.net", i)
	}
	const heldID = "n09.example.net"
	fl := startAgents(t, ids, nil)
	repo := fl.f.repo
	conn := fl.conn
	state := func(id string) string { return filepath.Join(fl.f.dir, fmt.Sprintf("state-%d", slices.Index(ids, id))) }
	// markFailing makes version fail on the nodes failing, and no version
	// fail anywhere else.
	markFailing := func(version string, failing ...string) {
		t.Helper()
		for _, id := range ids {
			old, _ := filepath.Glob(filepath.Join(state(id), "fail-*"))
			for _, p := range old {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
			if slices.Contains(failing, id) {
				if err := os.WriteFile(filepath.Join(state(id), "fail-"+version), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	others := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == heldID })
	steered := func(e spec.Machine) spec.Machine {
		e = gateRollout(e, 5*time.Second, "1", "50%", "100%")
		e.Rollout.MaxFailed = spec.Budget{N: 1}
		e.Hold = "identity('^n09')"
		return e
	}
	on := func(e spec.Machine, outcomes ...string) func(string, nodestatus.Entry) error {
		return func(_ string, got nodestatus.Entry) error {
			if got.Installed != e.Checksum || (len(outcomes) > 0 && !slices.Contains(outcomes, got.Outcome)) {
				return fmt.Errorf("want %s installed (%v)", e.Source, outcomes)
			}
			return nil
		}
	}

	v1, cache := repo.publish(t, "web", "1.0.0"), repo.publish(t, "cache", "1.0.0")
	env1 := fl.pack(t, v1, cache)
	if r := mms(t, env1, append([]string{"put", "--wait", "60s"}, conn...)...); r.code != 0 {
		t.Fatalf("put --wait of 1.0.0 = exit %d:\n%s", r.code, r.stderr)
	}

	// 1. One failure within max_failed 1: the rollout goes on to its end.
	v2 := steered(repo.publishCheck(t, "web", "2.0.0", failCheck("2.0.0")))
	fail2 := wavesOf(t, others, v2)[0][0]
	markFailing("2.0.0", fail2)
	r := fl.put(t, []string{"--wait", "120s"}, v2, cache)
	if r.code != 0 || !strings.Contains(r.stdout, "applied by 9 of 10 reporting agents\n") ||
		!strings.Contains(r.stdout, "  "+fail2+" failed within the rollout's failure budget (rolled back there): web rolled_back: version 2.0.0 (") {
		t.Fatalf("put --wait of 2.0.0 with one failure under max_failed 1 = exit %d\nstdout:\n%s\nstderr:\n%s\nwant 0 naming %s", r.code, r.stdout, r.stderr, fail2)
	}
	fl.docs(t, each(others, "web", func(id string, e nodestatus.Entry) error {
		if id == fail2 {
			return on(v1, "rolled_back")(id, e)
		}
		return on(v2)(id, e)
	}))
	fl.docs(t, each([]string{heldID}, "web", func(_ string, e nodestatus.Entry) error {
		if !e.HeldByHold() || e.Installed != v1.Checksum || e.Version != "1.0.0" {
			return errors.New("want held by its hold on 1.0.0")
		}
		return nil
	}))
	status := mmsOK(t, "", append([]string{"rollout", "status"}, conn...)...).stdout
	for _, want := range []string{
		"web: 1.0.0 → 2.0.0 (" + v2.Checksum[:12] + ")  waves 1, 50%, 100%, pause 0s, max_failed 1\n",
		"done: every other node runs the new version healthy\n",
		"failure budget: max_failed 1: 1 of 1 used; rolled back on their own: " + fail2 + "\n",
		"held by its hold (they keep what they run, in no wave): " + heldID + "\n",
	} {
		if !strings.Contains(status, want) {
			t.Errorf("mms rollout status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, heldID) && strings.Count(status, heldID) != 1 {
		t.Errorf("mms rollout status lists the held node in a wave:\n%s", status)
	}
	t.Logf("mms rollout status after 2.0.0:\n%s", status)
	if out := mmsOK(t, "", append([]string{"status"}, conn...)...).stdout; !strings.Contains(out, "rollout web done, max_failed 1: 1 of 1 used, 1 held by its hold\n") {
		t.Errorf("mms status lacks the rollout's budget and hold:\n%s", out)
	}
	if out := mmsOK(t, "", append([]string{"status", heldID}, conn...)...).stdout; !regexp.MustCompile(`(?m)^web\s+held \(hold\)\s+1\.0\.0\s`).MatchString(out) {
		t.Errorf("mms status %s does not show web held (hold):\n%s", heldID, out)
	}

	// 2. Two failures under max_failed 1: the rollout halts after wave 2.
	v3 := steered(repo.publishCheck(t, "web", "3.0.0", failCheck("3.0.0")))
	w3 := wavesOf(t, others, v3)
	markFailing("3.0.0", w3[0][0], w3[1][0])
	r = fl.put(t, []string{"--wait", "120s"}, v3, cache)
	halt := fmt.Sprintf("held: rollout halted at wave 2 (2 nodes failed, more than max_failed 1 allows; node %s: version 3.0.0 (%s) unhealthy: not ready within 5s", w3[1][0], v3.Checksum[:12])
	if r.code != 2 || !strings.Contains(r.stderr, "web "+halt) {
		t.Fatalf("put --wait of 3.0.0 with two failures = exit %d\nstderr:\n%s\nwant 2 and %q", r.code, r.stderr, halt)
	}
	fl.docs(t, each(w3[2], "web", func(id string, e nodestatus.Entry) error {
		keeps := v2.Checksum
		if id == fail2 {
			keeps = v1.Checksum // rolled back from 2.0.0 in step 1
		}
		if e.Outcome != "held" || !strings.HasPrefix(e.Reason, halt) || e.Installed != keeps {
			return errors.New("want held by the halt on the version it ran")
		}
		return nil
	}))

	// 3. Undo: back to 2.0.0 everywhere (the failures gone).
	markFailing("")
	out := fl.rollout(t, "undo", "web")
	if !strings.HasPrefix(out, "web back to 2.0.0 ("+v2.Checksum[:12]+"), as revision ") || !strings.Contains(out, "; was 3.0.0 ("+v3.Checksum[:12]+")\nput MACHINES/machines revision ") {
		t.Errorf("mms rollout undo web printed:\n%s", out)
	}
	t.Logf("mms rollout undo web:\n%s", out)
	fl.docs(t, each(others, "web", on(v2)))

	// 4. Pause once wave 1 is healthy: no other node starts 4.0.0, also
	// after the pause between waves would have ended; resume: all do.
	v4 := steered(repo.publishCheck(t, "web", "4.0.0", failCheck("4.0.0")))
	v4.Rollout.Pause = spec.Duration(5 * time.Second)
	w4 := wavesOf(t, others, v4)
	if r := fl.put(t, nil, v4, cache); r.code != 0 {
		t.Fatalf("put of 4.0.0 = exit %d:\n%s", r.code, r.stderr)
	}
	first := fl.entry(t, w4[0][0], "web", func(e nodestatus.Entry) error {
		if e.Installed != v4.Checksum || e.Health != string(rollout.Healthy) {
			return errors.New("want 4.0.0 healthy")
		}
		return nil
	})
	out = fl.rollout(t, "pause", "web")
	if !strings.HasPrefix(out, "web paused: no node starts 4.0.0 ("+v4.Checksum[:12]+"); nodes under way finish (mms rollout resume web continues)\n") {
		t.Errorf("mms rollout pause web printed:\n%s", out)
	}
	t.Logf("mms rollout pause web:\n%s", out)
	later := slices.Concat(w4[1:]...)
	fl.docs(t, each(later, "web", func(_ string, e nodestatus.Entry) error {
		if e.Outcome != "held" || e.Reason != rollout.PausedHeld || e.Installed != v2.Checksum {
			return errors.New("want held on 2.0.0 by the pause")
		}
		return nil
	}))
	natstest.Eventually(t, e2eTimeout, func() error {
		if time.Since(first.HealthyAt) < v4.Rollout.Pause.Std()+2*time.Second {
			return errors.New("the pause between waves has not ended yet")
		}
		return nil
	})
	paused := mmsOK(t, "", append([]string{"rollout", "status"}, conn...)...).stdout
	if !strings.Contains(paused, "PAUSED at wave 2 of 3: no node starts the new version (mms rollout resume web continues)\n") {
		t.Errorf("mms rollout status of the paused rollout:\n%s", paused)
	}
	t.Logf("mms rollout status, paused:\n%s", paused)
	fl.docs(t, each(later, "web", on(v2, "held")))
	out = fl.rollout(t, "resume", "web")
	if !strings.HasPrefix(out, "web resumed: the waves of 4.0.0 ("+v4.Checksum[:12]+") go on\n") {
		t.Errorf("mms rollout resume web printed:\n%s", out)
	}
	fl.docs(t, each(others, "web", on(v4)))

	// 5. The plan of the next spec, then the put: each node does what it
	// said. An older spec is refused by every node.
	db := repo.publish(t, "db", "1.0.0")
	db.Match = "identity('^n0[0-4]')"
	v4.Rollout.Pause = 0
	env6 := fl.pack(t, v4, db)
	plan := mms(t, env6, append([]string{"plan", "--json"}, conn...)...)
	var predicted planOutput
	if err := json.Unmarshal([]byte(plan.stdout), &predicted); plan.code != 0 || err != nil || len(predicted.Answered) != len(ids) || len(predicted.NoAnswer) != 0 {
		t.Fatalf("mms plan --json = exit %d (%v)\n%s\n%s\nwant every node's answer", plan.code, err, plan.stdout, plan.stderr)
	}
	table := mmsOK(t, env6, append([]string{"plan"}, conn...)...).stdout
	for _, want := range []string{
		"plan of serial " + fmt.Sprint(fl.serial) + ": 10 of 10 agents answered\n",
		"web: no change 9, hold 1\ndb: install 5, skip 5\ncache: purge 10\n",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("mms plan lacks %q:\n%s", want, table)
		}
	}
	t.Logf("mms plan:\n%s", table)
	if r := mms(t, env1, append([]string{"plan"}, conn...)...); r.code != 2 || !strings.Contains(r.stderr, "10 of 10 agents would refuse serial") {
		t.Errorf("mms plan of an older spec = exit %d\n%s\n%s\nwant 2, every node refusing", r.code, r.stdout, r.stderr)
	}
	if r := mms(t, env6, append([]string{"put", "--wait", "60s"}, conn...)...); r.code != 0 {
		t.Fatalf("put --wait of the planned spec = exit %d:\n%s", r.code, r.stderr)
	}
	fl.docs(t, func(docs map[string]*nodestatus.Document) error {
		for _, p := range predicted.Answered {
			d := docs[p.Identity]
			if d.AppliedSerial() != fl.serial {
				return fmt.Errorf("%s has not applied serial %d", p.Identity, fl.serial)
			}
			for _, e := range p.Entries {
				got, _ := d.Entry(e.Name)
				running := findMachine(d, e.Name)
				var ok bool
				switch e.Action {
				case manager.PlanNoChange:
					ok = got.Outcome == "unchanged" && got.Installed == e.Checksum
				case manager.PlanHold:
					ok = got.HeldByHold() && got.Installed == e.Installed
				case manager.PlanInstall: // installed, then unchanged in later passes
					ok = (got.Outcome == "installed" || got.Outcome == "unchanged") && got.Installed == e.Checksum && running != nil && running.State == "ready"
				case manager.PlanSkip:
					ok = got.Outcome == "skipped" && running == nil
				case manager.PlanPurge: // purged, then no entry in later passes
					ok = (got.Name == "" || got.Outcome == "purged") && running == nil
				}
				if !ok {
					return fmt.Errorf("%s: %s: planned %s (%+v), the put did %+v (running %+v)", p.Identity, e.Name, e.Action, e, got, running)
				}
			}
		}
		return nil
	})
}
