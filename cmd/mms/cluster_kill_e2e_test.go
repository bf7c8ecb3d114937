package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// killTimeout bounds each wait of the kill tests: a JetStream election, a
// restarted server catching up, agents failing over.
const killTimeout = 90 * time.Second

// machineSourceDir writes the directory of machine name at version (its
// machine.yaml and a check.sh that passes) for `mms archive create`.
func machineSourceDir(t *testing.T, name, version string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "machine.yaml", runnableMachineYAML(name, version))
	if err := os.WriteFile(filepath.Join(dir, "check.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// uploadArchive runs `mms archive create DIR --upload nats://ARCHIVES`
// (the built binary) and returns the spec entry it prints.
func uploadMachine(t *testing.T, urls, dir string) spec.Machine {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(dir)+".tar.gz")
	r := mmsExec(t, nil, "archive", "create", dir, "--out", out, "--upload", "nats://ARCHIVES", "--server", urls)
	if r.code != 0 {
		t.Fatalf("mms archive create --upload = exit %d:\n%s", r.code, r.stderr)
	}
	var m spec.Machine
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("mms archive create printed %q: %v", r.stdout, err)
	}
	return m
}

// statusDocs runs `mms status --json` (the built binary) and returns the
// documents by identity.
func statusDocs(t *testing.T, urls string) (map[string]*nodestatus.Document, error) {
	t.Helper()
	r := mmsExec(t, nil, "status", "--json", "--server", urls)
	if r.code != 0 {
		return nil, fmt.Errorf("mms status --json: exit %d: %s", r.code, r.stderr)
	}
	var docs []nodestatus.Document
	if err := json.Unmarshal([]byte(r.stdout), &docs); err != nil {
		return nil, fmt.Errorf("mms status --json printed %q: %w", r.stdout, err)
	}
	out := map[string]*nodestatus.Document{}
	for i := range docs {
		out[docs[i].Identity] = &docs[i]
	}
	return out, nil
}

// entryOf returns doc's entry name.
func entryOf(doc *nodestatus.Document, name string) *nodestatus.Entry {
	for i := range doc.Entries {
		if doc.Entries[i].Name == name {
			return &doc.Entries[i]
		}
	}
	return nil
}

// TestFleetSurvivesEachServerKilled is issue 25's "any one server may die":
// three nats-server processes (this test binary re-executed, so SIGKILL is
// a real crash), every resource made by the built binary's `mms init
// --replicas 3`, six agent processes each given one server. While a
// rollout of a new version runs in waves (one node a wave, a pause between
// waves), the server leading each stream in turn (spec, status, archives,
// events) — and every server at least once — is killed with SIGKILL and,
// once checked, started again. While it is down, `mms status` and `mms
// events --since` answer, and every agent, those of the dead server
// included, writes its status again. The rollout completes (`mms put
// --wait` exits 0): its downloads came from the object store through the
// kills; every agent runs the new version healthy, and `mms init --check`
// finds every replica current at the end.
func TestFleetSurvivesEachServerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and six agent processes")
	}
	mmsBinary(t) // built before the test changes directory
	started := time.Now()
	f := newOperatorFixture(t)
	pub := strings.TrimSpace(readFile(t, f.pub))
	servers := natstest.RunClusterProcesses(t, 3)
	urls := natstest.ProcessURLs(servers)
	byName := map[string]*natstest.Process{}
	for _, s := range servers {
		byName[s.Name] = s
	}

	// The admin: every resource, three replicas, once JetStream answers.
	natstest.Eventually(t, killTimeout, func() error {
		r := mmsExec(t, nil, "governor", "list", "--server", urls, "--timeout", "2s")
		if r.code != 0 {
			return fmt.Errorf("mms governor list = exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	natstest.Eventually(t, killTimeout, func() error { // the new cluster elects its leaders
		if r := mmsExec(t, nil, "init", "--replicas", "3", "--server", urls); r.code != 0 {
			return fmt.Errorf("mms init --replicas 3 = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	t.Logf("%v: mms init made every resource with 3 replicas", time.Since(started).Round(time.Millisecond))
	v1 := uploadMachine(t, urls, machineSourceDir(t, "web", "1.0.0"))

	// Six agents, two on each server (each is given one, and learns the
	// others from the cluster).
	const agents = 6
	ids := make([]string, agents)
	var procs []*proc
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range procs {
				t.Logf("agent %s's log:\n%s", ids[i], p.stderr)
			}
		}
	})
	for i := range ids {
		ids[i] = fmt.Sprintf("k%d.example.net", i)
		procs = append(procs, startMMS(t, nil, "agent", "--server", servers[i%len(servers)].URL, "--public-key", pub,
			"--state-dir", filepath.Join(f.dir, "state-"+ids[i]), "--identity", ids[i],
			// A status write in flight when its server dies waits out
			// --timeout; the document goes stale after 3 heartbeats, which
			// halts a rollout: keep the timeout a heartbeat (as the
			// defaults, 10s and 30s, keep it a third of one).
			"--status-interval", "3s", "--timeout", "3s"))
	}
	serial := uint64(time.Now().Unix())
	pack := func(entries ...spec.Machine) string {
		t.Helper()
		writeMachines(t, f.dir, entries...)
		serial++
		return mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--serial", fmt.Sprint(serial)).stdout
	}
	natstest.Eventually(t, killTimeout, func() error {
		docs, err := statusDocs(t, urls)
		if err != nil {
			return err
		}
		if len(docs) != agents {
			return fmt.Errorf("%d of %d agents report", len(docs), agents)
		}
		return nil
	})
	t.Logf("%v: every agent reports", time.Since(started).Round(time.Millisecond))
	putFile := func(name, envelope string) string {
		t.Helper()
		return writeFile(t, f.dir, name, envelope)
	}
	if r := mmsExec(t, nil, "put", putFile("spec-1.json", pack(v1)), "--wait", "2m", "--server", urls); r.code != 0 {
		t.Fatalf("mms put --wait of 1.0.0 = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("%v: 1.0.0 runs on every agent", time.Since(started).Round(time.Millisecond))

	// 2.0.0 in waves of one node, a pause between waves.
	v2 := uploadMachine(t, urls, machineSourceDir(t, "web", "2.0.0"))
	v2.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(time.Minute)}
	v2.Rollout = &spec.Rollout{Waves: []string{"1", "2", "3", "4", "5", "100%"}, Pause: spec.Duration(5 * time.Second)}
	rolloutPut := startMMS(t, nil, "put", putFile("spec-2.json", pack(v2)), "--wait", "5m", "--server", urls)
	natstest.Eventually(t, killTimeout, func() error {
		if !strings.Contains(rolloutPut.stdout.String(), "put MACHINES/machines revision") {
			return fmt.Errorf("mms put has not written the spec yet:\n%s", rolloutPut.stderr)
		}
		return nil
	})
	rolloutStart := time.Now()

	_, js := connectJS(t, urls)
	leaderOf := func(stream string) *natstest.Process {
		t.Helper()
		var leader *natstest.Process
		natstest.Eventually(t, killTimeout, func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return err
			}
			if c := s.CachedInfo().Cluster; c != nil && byName[c.Leader] != nil {
				leader = byName[c.Leader]
				return nil
			}
			return fmt.Errorf("stream %s has no leader: %+v", stream, s.CachedInfo().Cluster)
		})
		return leader
	}
	wavesDuring := map[string]int{} // how many agents ran 2.0.0 healthy at each kill
	killed := map[string]bool{}
	kill := func(p *natstest.Process, why string) {
		t.Helper()
		at := time.Now()
		p.Kill(t)
		// mms status answers (once JetStream has a leader for the status
		// bucket again: each try is a new command with the default
		// --timeout).
		natstest.Eventually(t, killTimeout, func() error { _, err := statusDocs(t, urls); return err })
		statusAfter := time.Since(at)

		// mms events --since replays from the events stream.
		natstest.Eventually(t, killTimeout, func() error {
			return eventsReplay(t, []string{"--server", urls}, " web transition checked idle -> ready")
		})
		eventsAfter := time.Since(at)
		// Every agent writes its status again, none through the dead
		// server.
		healthy := 0
		natstest.Eventually(t, killTimeout, func() error {
			docs, err := statusDocs(t, urls)
			if err != nil {
				return err
			}
			healthy = 0
			for _, id := range ids {
				d := docs[id]
				switch {
				case d == nil:
					return fmt.Errorf("no status of %s", id)
				case !d.UpdatedAt.After(at) || !d.NATS.Connected || d.NATS.Server == p.Name:
					return fmt.Errorf("%s: status updated %v after the kill, NATS %+v", id, d.UpdatedAt.Sub(at), d.NATS)
				}
				if e := entryOf(d, "web"); e != nil && e.Installed == v2.Checksum && e.Health == string(rollout.Healthy) {
					healthy++
				}
			}
			return nil
		})
		agentsAfter := time.Since(at)

		wavesDuring[p.Name+" ("+why+")"] = healthy
		p.Start(t)
		// Every replica of every resource current again.
		natstest.Eventually(t, killTimeout, func() error {
			if r := mmsExec(t, nil, "init", "--check", "--replicas", "3", "--server", urls); r.code != 0 {
				return fmt.Errorf("mms init --check = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
			}
			return nil
		})
		t.Logf("%v: killed %s (%s) with SIGKILL: mms status answered after %v, mms events --since after %v, every agent wrote its status after %v (%d of %d ran 2.0.0 healthy); restarted, every replica current after %v",
			time.Since(started).Round(time.Millisecond), p.Name, why, statusAfter.Round(time.Millisecond), eventsAfter.Round(time.Millisecond),
			agentsAfter.Round(time.Millisecond), healthy, agents, time.Since(at).Round(time.Millisecond))
		killed[p.Name] = true
	}
	for _, stream := range []string{"KV_MACHINES", "KV_MACHINES_STATUS", "OBJ_ARCHIVES", "CHORIA_MACHINE"} {
		kill(leaderOf(stream), "leader of "+stream)
	}
	for _, s := range servers {
		if !killed[s.Name] {
			kill(s, "not killed yet")
		}
	}

	// The rollout completes, and every agent runs 2.0.0 healthy.
	select {
	case <-rolloutPut.done:
	case <-time.After(3 * time.Minute):
		// What the agents say against what put --wait saw: progress that
		// lags agents that all run 2.0.0 is a watch of put --wait stuck.
		st := mmsExec(t, nil, "status", "--server", urls)
		t.Fatalf("mms put --wait still waits 3m after the last kill:\n%s\nmms status = exit %d:\n%s%s", rolloutPut.stderr, st.code, st.stdout, st.stderr)
	}
	if code := rolloutPut.wait(t); code != 0 {
		t.Fatalf("mms put --wait of the 2.0.0 rollout = exit %d:\n%s%s", code, rolloutPut.stdout, rolloutPut.stderr)
	}
	t.Logf("%v: the rollout completed, %v after the put; agents running 2.0.0 healthy at each kill: %v",
		time.Since(started).Round(time.Millisecond), time.Since(rolloutStart).Round(time.Millisecond), wavesDuring)
	docs, err := statusDocs(t, urls)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		e := entryOf(docs[id], "web")
		if e == nil || e.Installed != v2.Checksum || e.Health != string(rollout.Healthy) {
			t.Errorf("%s: web %+v, want 2.0.0 (%s) healthy", id, e, v2.Checksum)
		}
	}
	// An agent whose spec watch was being made again when the last server
	// died reports that watch's failure until its next try (250 ms later,
	// then backing off) succeeds: the fleet is healthy again soon after,
	// not necessarily at once.
	natstest.Eventually(t, killTimeout, func() error {
		if r := mmsExec(t, nil, "status", "--check", "--server", urls); r.code != 0 {
			return fmt.Errorf("mms status --check = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	if len(killed) != len(servers) {
		t.Errorf("killed %v, want every server", killed)
	}
}

// eventsReplay runs `mms events --since 10m` (the built binary) with the
// connection flags conn until it prints want, and fails if it exits or
// takes 15 s.
func eventsReplay(t *testing.T, conn []string, want string) error {
	t.Helper()
	ev := startMMS(t, nil, append([]string{"events", "--since", "10m", "--timeout", "5s"}, conn...)...)
	defer func() {
		_ = ev.cmd.Process.Signal(syscall.SIGTERM)
		<-ev.done
	}()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(ev.stdout.String(), want) {
		select {
		case <-ev.done:
			return fmt.Errorf("mms events --since exited (%v) before printing %q:\n%s", ev.err, want, ev.stderr)
		case <-deadline:
			return fmt.Errorf("mms events --since printed no %q in 15s:\n%s\n%s", want, ev.stdout, ev.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
