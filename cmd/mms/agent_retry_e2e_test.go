package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestAgentRetriesAndReconcile follows issue 14's done-when with a real
// agent: an entry whose governor does not exist yet fails; once an
// operator creates the governor the agent installs it within 30 s without
// a new spec (the retry backoff, not the 5-minute interval). `mms
// reconcile` makes the agent repair a machine deleted by hand at once and
// says which node answered. And (issue 18.9) an entry with a confusable
// name does not purge the machine it looks like.
func TestAgentRetriesAndReconcile(t *testing.T) {
	f := newOperatorFixture(t)
	dir, keyFile, state, repo, sign := f.dir, f.keyFile, f.state, f.repo, f.sign
	a := startTestAgent(t, f.pub, state)
	server := a.login.flags()

	web := repo.publish(t, "web", "1.0.0")
	web.Governor = "late"
	writeMachines(t, dir, web)
	serial := packPut(t, sign, server)
	a.waitSpecEvent(t, serial, func(ev specEvent) error {
		for _, r := range ev.Results {
			if r.Name == "web" && r.Outcome == manager.EntryFailed && strings.Contains(r.Reason, `governor "late" does not exist`) {
				return nil
			}
		}
		return fmt.Errorf("results %+v, want web failed for the missing governor", ev.Results)
	})

	mmsOK(t, "", append([]string{"governor", "add", "late", "1"}, server...)...)
	created := time.Now()
	natstest.Eventually(t, 30*time.Second, func() error {
		return installedVersion(t, state, "1.0.0")
	})
	a.waitSpecEvent(t, serial, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryInstalled) })
	t.Logf("installed %v after the governor was created", time.Since(created).Round(time.Millisecond))

	// Drift, repaired on demand.
	if err := os.RemoveAll(filepath.Join(state, "machines", "web")); err != nil {
		t.Fatal(err)
	}
	if r := mms(t, "", append([]string{"reconcile", "--identity", "^nobody$", "--wait", "300ms"}, server...)...); r.code == 0 || !strings.Contains(r.stderr, "no node answered") {
		t.Errorf("mms reconcile for no node: exit %d, stderr %q", r.code, r.stderr)
	}
	r := mmsOK(t, "", append([]string{"reconcile", "--identity", "^web1$", "--wait", "500ms"}, server...)...)
	if r.stdout != "nudged 1 node: web1\n" {
		t.Errorf("mms reconcile stdout = %q, want the node that answered", r.stdout)
	}
	natstest.Eventually(t, e2eTimeout, func() error { return installedVersion(t, state, "1.0.0") })

	// A confusable name (Cyrillic е) purges nothing. mms pack refuses the
	// name, so the spec is signed by another tool.
	bad := web
	bad.Name = "w\u0435b"
	writeMachines(t, dir, bad)
	if r := mms(t, "", append([]string{"pack", "machines.json"}, sign...)...); r.code == 0 {
		t.Fatalf("mms pack accepted the confusable name")
	}
	key, err := packer.ParsePrivateKey(readFile(t, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	serial++
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: serial, IssuedAt: time.Now().UTC(), Machines: []spec.Machine{bad}}, key)
	if err != nil {
		t.Fatal(err)
	}
	a.rawPut(t, env)
	a.waitSpecEvent(t, serial, func(ev specEvent) error {
		for _, r := range ev.Results {
			if r.Name == bad.Name && r.Outcome == manager.EntryFailed && strings.HasPrefix(r.Reason, "invalid entry (nothing was installed under this name; nothing is purged while an entry's name is invalid): ") {
				return nil
			}
		}
		return fmt.Errorf("results %+v, want the confusable entry failed, purging nothing", ev.Results)
	})
	if err := installedVersion(t, state, "1.0.0"); err != nil {
		t.Errorf("after the confusable spec: %v", err)
	}
	a.shutdown(t)
}
