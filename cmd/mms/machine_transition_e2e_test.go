package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/nodestatus"
)

// TestMachineTransitionRealAgents fires transitions with `mms machine
// transition` on two real agent processes: the compiled-in manager enters
// MAINTENANCE, where a new spec is not installed, and resumes, when it is;
// a transition the current state does not allow is refused, a machine a
// node does not run is said to be missing, and a node that reports status
// but has stopped is listed as not answering.
func TestMachineTransitionRealAgents(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	keyFile, pub := newKeyPair(t, dir, "ops")
	repo := newArchiveRepo(t)
	start := func(id string, extra ...string) *proc {
		args := append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", filepath.Join(dir, "state-"+id),
			"--allow-http", "--identity", id, "--status-interval", "500ms"}, extra...)
		return startMMS(t, nil, args...)
	}
	web1 := start("web1", "--listen", "127.0.0.1:0")
	agentURL(t, web1.stderr)
	conn := loginOf(t, filepath.Join(dir, "state-web1")).flags()
	web2 := start("web2", conn...)
	for _, id := range []string{"web1", "web2"} {
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			if d.Seen == nil {
				return fmt.Errorf("%s: the manager has not reported yet", id)
			}
			return nil
		})
	}
	transition := func(args ...string) result {
		t.Helper()
		return mms(t, "", append(append([]string{"machine", "transition"}, args...), conn...)...)
	}
	expect := func(r result, code int, stdout, stderr string) {
		t.Helper()
		if r.code != code || r.stdout != stdout || r.stderr != stderr {
			t.Errorf("mms machine transition: exit %d, stdout\n%s\nstderr %q\nwant exit %d, stdout\n%s\nstderr %q", r.code, r.stdout, r.stderr, code, stdout, stderr)
		}
	}
	const header = "NODE  RESULT        DETAIL\n"

	expect(transition("--identity", "^web", "mms_manager", "enter_maintenance"), 0, header+
		"web1  transitioned  mms_manager: MANAGE -> MAINTENANCE\n"+
		"web2  transitioned  mms_manager: MANAGE -> MAINTENANCE\n", "")
	expect(transition("--identity", "^web1$", "mms_manager", "enter_maintenance"), 1, header+
		`web1  refused       machine "mms_manager": invalid transition: "enter_maintenance" cannot fire in state "MAINTENANCE", only in MANAGE`+"\n",
		"mms: 1 of 1 node did not transition mms_manager (enter_maintenance)\n")
	expect(transition("--identity", "web2", "mms_manager", "resume"), 0, header+
		"web2  transitioned  mms_manager: MAINTENANCE -> MANAGE\n", "")

	// A spec while web1 is in maintenance: web2 installs it, web1 does not.
	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	serial := packPut(t, []string{"--key-file", keyFile, "--allow-http"}, conn)
	runs := func(id string) func(d *nodestatus.Document) error {
		return func(d *nodestatus.Document) error {
			if d.Applied == nil || d.Applied.Serial != serial || !slices.ContainsFunc(d.Machines, func(m nodestatus.Machine) bool { return m.Name == "web" && m.State != "" }) {
				return fmt.Errorf("%s does not run serial %d's web yet: %+v", id, serial, d.Machines)
			}
			return nil
		}
	}
	pollStatus(t, conn, "web2", runs("web2"))
	pollStatus(t, conn, "web1", func(d *nodestatus.Document) error {
		for _, m := range d.Machines {
			if m.Name == "mms_manager" && m.State == "MAINTENANCE" {
				return nil
			}
		}
		return fmt.Errorf("web1's manager is not reported in MAINTENANCE: %+v", d.Machines)
	})
	if _, err := os.Stat(filepath.Join(dir, "state-web1", "machines", "web")); !os.IsNotExist(err) {
		t.Errorf("web1 installed web while in maintenance (%v)", err)
	}
	expect(transition("--identity", "^web1$", "mms_manager", "resume"), 0, header+
		"web1  transitioned  mms_manager: MAINTENANCE -> MANAGE\n", "")
	pollStatus(t, conn, "web1", runs("web1"))

	expect(transition("--identity", "web2", "nope", "go"), 1, header+
		`web2  no machine    no machine "nope" runs on this node (it runs ["mms_manager" "web"])`+"\n",
		"mms: 1 of 1 node did not transition nope (go)\n")

	// web2 stops: it reports status, but no longer answers.
	web2.signal(t, syscall.SIGTERM)
	if code := web2.wait(t); code != 0 {
		t.Fatalf("web2 exit code %d; stderr:\n%s", code, web2.stderr)
	}
	stopped := pollStatus(t, conn, "web2", func(d *nodestatus.Document) error {
		if d.StoppedAt.IsZero() {
			return fmt.Errorf("web2's status does not say it stopped")
		}
		return nil
	}).StoppedAt
	expect(transition("--identity", "^web", "--wait", "1s", "mms_manager", "enter_maintenance"), 1, header+
		"web1  transitioned  mms_manager: MANAGE -> MAINTENANCE\n"+
		"web2  no answer     within 1s; its agent stopped at "+stopped.Local().Format(time.DateTime)+"\n",
		"mms: 1 of 2 nodes did not transition mms_manager (enter_maintenance)\n")

	// Each node logged what it was asked and did.
	web1.waitStderr(t, `msg="transition requested over NATS" machine=mms_manager transition=enter_maintenance outcome=refused from=MAINTENANCE`)
}
