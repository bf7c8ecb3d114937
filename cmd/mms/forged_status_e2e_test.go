package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// TestNodeSpeaksOnlyForItself is issue 23's first attack, on a real
// nats-server configured by `mms nats-config` and a real agent process:
// node web1, with nothing but its own nkey, writes its own status key with
// a document that claims to be a node that does not exist (ranked first by
// the wave hash, failing the new version, written "in 2099"). The agent
// web2 ignores it, so the rollout is not halted and web2 installs the new
// version; `mms status` flags the document; and a genuine document from
// the future goes stale like any other once its node stops writing.
func TestNodeSpeaksOnlyForItself(t *testing.T) {
	dir, keyFile, pub, f := newFleet(t, "web1", "web2")
	repo := newArchiveRepo(t)
	operator := f.as("operator")

	serial := uint64(time.Now().Unix()) // two puts may come within a second
	sign := func() []string {
		serial++
		return []string{"--key-file", keyFile, "--allow-http", "--serial", fmt.Sprint(serial)}
	}
	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	packPut(t, sign(), operator)
	web2 := f.startNode(t, dir, pub, "web2", "--allow-http")
	entryOf := func(d *nodestatus.Document) nodestatus.Entry {
		for _, e := range d.Entries {
			if e.Name == "web" {
				return e
			}
		}
		return nodestatus.Entry{}
	}
	pollStatus(t, operator, "web2", func(d *nodestatus.Document) error {
		if e := entryOf(d); e.Version != "1.0.0" {
			return fmt.Errorf("web2 runs %q, want 1.0.0", e.Version)
		}
		return nil
	})

	// The attacker: web1's own credentials, a document for a node that
	// does not exist, ranked first for 2.0.0, which it failed.
	v2 := repo.publish(t, "web", "2.0.0")
	v2.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(30 * time.Second)}
	v2.Rollout = &spec.Rollout{Waves: []string{"1", "100%"}}
	fake := ""
	for i := 0; fake == ""; i++ {
		id := fmt.Sprintf("fake%d", i)
		if rollout.Assign([]string{id, "web2"}, "web", v2.Checksum, mustParseWaves(t, v2.Rollout.Waves))[0][0] == id {
			fake = id
		}
	}
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	forged, err := json.Marshal(nodestatus.Document{Version: nodestatus.DocumentVersion, Identity: fake, StartedAt: future, UpdatedAt: future, Heartbeat: "1s",
		Entries: []nodestatus.Entry{{Name: "web", Outcome: "failed", Checksum: v2.Checksum, Reason: "install: it does not work"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, web1JS := f.connect(t, "node-web1")
	statusKV, err := web1JS.KeyValue(t.Context(), nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := statusKV.Put(t.Context(), nodestatus.Key("web1"), forged); err != nil {
		t.Fatalf("web1 writes its own key: %v", err)
	}

	writeMachines(t, dir, v2)
	packPut(t, sign(), operator)
	pollStatus(t, operator, "web2", func(d *nodestatus.Document) error {
		if e := entryOf(d); e.Version != "2.0.0" || e.Health != string(rollout.Healthy) {
			return fmt.Errorf("web2's web entry: %+v, want 2.0.0 healthy (a forged document halted the rollout?)", e)
		}
		return nil
	})
	if s := web2.stderr.String(); !strings.Contains(s, "ignoring a forged status document") || strings.Count(s, "ignoring a forged status document") != 1 {
		t.Errorf("web2 logged the forged document %d times, want once:\n%s", strings.Count(s, "ignoring a forged status document"), s)
	}

	r := mms(t, "", append([]string{"status", "--check"}, operator...)...)
	want := "web1: forged: key web1 claims identity " + fake
	if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "\n"+fake) {
		t.Errorf("mms status --check = exit %d\n%s%s\nwant exit 2, %q, and no row named %s", r.code, r.stdout, r.stderr, want, fake)
	}
	for _, view := range [][]string{{"rollout", "status"}, {"status", "--json"}} {
		if out := mms(t, "", append(view, operator...)...).stdout; strings.Contains(out, fake) {
			t.Errorf("mms %s shows the forged identity:\n%s", strings.Join(view, " "), out)
		}
	}

	// A genuine identity with a clock from the future: fresh while it is
	// written, stale 3 heartbeats after it stops.
	genuine, err := json.Marshal(nodestatus.Document{Version: nodestatus.DocumentVersion, Identity: "web1", StartedAt: future, UpdatedAt: future, Heartbeat: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := statusKV.Put(t.Context(), nodestatus.Key("web1"), genuine); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, e2eTimeout, func() error {
		r := mms(t, "", append([]string{"status", "--check"}, operator...)...)
		if !regexp.MustCompile(`web1: .*stale: no update for`).MatchString(r.stderr) {
			return fmt.Errorf("mms status --check = exit %d, %s%s; want web1 stale", r.code, r.stdout, r.stderr)
		}
		return nil
	})
}
