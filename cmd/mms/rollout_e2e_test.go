package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// loadEvent is a host "loaded" event: a node started a version of a
// machine, at time.
type loadEvent struct {
	identity, machine, version string
	at                         time.Time
}

// TestRolloutAcrossAgents runs ten real agent processes (one with the
// embedded server, nine clients) and rolls two versions out in waves with
// a health gate: a good one goes wave by wave (no node of a later wave
// starts it before the earlier waves run it healthy) and the whole fleet
// converges; a bad one (its machine never gets healthy) reaches wave 1
// only, is rolled back there, and no other node ever runs it; `mms rollout
// status` and `mms put --wait` say where and why it halted.
func TestRolloutAcrossAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ten agent processes")
	}
	mmsBinary(t) // built before the test changes directory
	f := newOperatorFixture(t)
	pub := strings.TrimSpace(readFile(t, f.pub))
	const agents = 10
	ids := make([]string, agents)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%02d.example.net", i)
	}
	common := []string{"--public-key", pub, "--allow-http", "--status-interval", "1s"}
	state0 := filepath.Join(f.dir, "state-0")
	first := startMMS(t, nil, append([]string{"agent", "--state-dir", state0, "--identity", ids[0], "--listen", "127.0.0.1:0"}, common...)...)
	waitFor(t, first.stderr, "listening on")
	login := loginOf(t, state0)
	conn := login.flags()
	for i := 1; i < agents; i++ {
		startMMS(t, nil, append(append([]string{"agent", "--state-dir", filepath.Join(f.dir, fmt.Sprintf("state-%d", i)), "--identity", ids[i]}, conn...), common...)...)
	}

	// Every host "loaded" event, to see who started which version when.
	nc := login.connect(t)
	var mu sync.Mutex
	var loads []loadEvent
	sub, err := nc.Subscribe(agent.WatcherStateSubject(agent.HostWatcherType), func(m *nats.Msg) {
		var ev struct {
			Time time.Time `json:"time"`
			Data struct {
				Identity string `json:"identity"`
				Machine  string `json:"machine"`
				Version  string `json:"version"`
				Outcome  string `json:"outcome"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &ev) == nil && ev.Data.Outcome == agent.HostLoaded {
			mu.Lock()
			loads = append(loads, loadEvent{ev.Data.Identity, ev.Data.Machine, ev.Data.Version, ev.Time})
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil { // the subscription is on the server before any put
		t.Fatal(err)
	}

	// Every agent reports before the rollouts (the waves rank who reports).
	for _, id := range ids {
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			if d.Seen == nil {
				return fmt.Errorf("%s has not reported yet", id)
			}
			return nil
		})
	}
	serial := uint64(time.Now().Unix()) // serials one apart: puts may come within a second
	put := func(wait string, entries ...spec.Machine) result {
		t.Helper()
		writeMachines(t, f.dir, entries...)
		serial++
		env := mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--allow-http", "--serial", fmt.Sprint(serial)).stdout
		return mms(t, env, append([]string{"put", "--wait", wait}, conn...)...)
	}
	waves := []string{"1", "50%", "100%"}
	gate := func(e spec.Machine, within time.Duration) spec.Machine {
		e.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(within)}
		e.Rollout = &spec.Rollout{Waves: waves, Pause: spec.Duration(time.Second)}
		return e
	}

	// 1.0.0 everywhere at once (no policy).
	if r := put("120s", f.repo.publish(t, "web", "1.0.0")); r.code != 0 {
		t.Fatalf("put --wait of 1.0.0 = exit %d:\n%s", r.code, r.stderr)
	}

	// 2.0.0 in waves.
	v2 := gate(f.repo.publish(t, "web", "2.0.0"), 30*time.Second)
	if r := put("180s", v2); r.code != 0 {
		t.Fatalf("put --wait of the 2.0.0 rollout = exit %d:\n%s", r.code, r.stderr)
	}
	plan := rollout.Assign(ids, "web", v2.Checksum, mustParseWaves(t, waves))
	healthyAt := map[string]time.Time{}
	for _, id := range ids {
		d := pollStatus(t, conn, id, func(d *nodestatus.Document) error { return nil })
		for _, e := range d.Entries {
			if e.Name == "web" {
				if e.Health != string(rollout.Healthy) || e.Installed != v2.Checksum {
					t.Errorf("%s after the rollout: %+v, want 2.0.0 healthy", id, e)
				}
				healthyAt[id] = e.HealthyAt
			}
		}
	}
	started := func(version string) map[string]time.Time {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]time.Time{}
		for _, l := range loads {
			if l.machine == "web" && l.version == version {
				if _, ok := out[l.identity]; !ok {
					out[l.identity] = l.at
				}
			}
		}
		return out
	}
	v2Started := started("2.0.0")
	for w := 1; w < len(plan); w++ {
		var lastHealthy time.Time
		for _, id := range slices.Concat(plan[:w]...) {
			if healthyAt[id].After(lastHealthy) {
				lastHealthy = healthyAt[id]
			}
		}
		for _, id := range plan[w] {
			if at := v2Started[id]; at.IsZero() || at.Before(lastHealthy) {
				t.Errorf("%s (wave %d) started 2.0.0 at %v, before the earlier waves were healthy (%v)", id, w+1, at, lastHealthy)
			}
		}
	}
	t.Logf("waves of 2.0.0: %v", plan)

	// 3.0.0 never gets healthy: wave 1 rolls it back and the rollout halts.
	v3 := gate(f.repo.publishCheck(t, "web", "3.0.0", "exit 1"), 3*time.Second)
	r := put("120s", v3)
	first3 := rollout.Assign(ids, "web", v3.Checksum, mustParseWaves(t, waves))[0][0]
	unhealthy := "version 3.0.0 (" + v3.Checksum[:12] + ") unhealthy: not ready within 3s"
	if r.code != 2 || !strings.Contains(r.stderr, first3) || !strings.Contains(r.stderr, unhealthy) {
		t.Errorf("put --wait of the bad rollout = exit %d, stderr:\n%s\nwant 2 naming %s and why", r.code, r.stderr, first3)
	}
	for _, id := range ids {
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			for _, e := range d.Entries {
				switch {
				case e.Name != "web":
				case id == first3 && e.Outcome == "rolled_back" && e.Installed == v2.Checksum:
					return nil
				case id != first3 && e.Outcome == "held" && strings.Contains(e.Reason, "rollout halted at wave 1 (node "+first3):
					return nil
				}
			}
			return fmt.Errorf("%s: web not rolled back / halted yet: %+v", id, d.Entries)
		})
	}
	if got := started("3.0.0"); len(got) != 1 || got[first3].IsZero() {
		t.Errorf("3.0.0 was started on %v, want only %s (wave 1)", got, first3)
	}
	status := mmsOK(t, "", append([]string{"rollout", "status"}, conn...)...).stdout
	for _, want := range []string{"web: 2.0.0 → " + v3.Checksum[:12] + "  waves 1, 50%, 100%", "HALTED at wave 1: node " + first3 + ": " + unhealthy, "rolled_back", "held"} {
		if !strings.Contains(status, want) {
			t.Errorf("mms rollout status lacks %q:\n%s", want, status)
		}
	}
	t.Logf("mms rollout status:\n%s", status)
}

func mustParseWaves(t *testing.T, w []string) []spec.Wave {
	t.Helper()
	out, err := spec.ParseWaves(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRolloutStatusAgreesWhenWaveOneStopsReporting runs three real agent
// processes and rolls 2.0.0 out in two waves with a long pause: the node
// of wave 1 installs it, runs it healthy, and is killed (SIGKILL) so it
// stops reporting. The agents of wave 2 wait for it ("held: waiting for
// wave 1 (node X stopped reporting)": it may come back), and `mms rollout
// status` (the built binary) says the same: under way at wave 1, waiting
// for that node, the versions named on both sides; --json agrees. (Before
// the fleet view, the agents halted and the command said "under way"
// without a reason.)
func TestRolloutStatusAgreesWhenWaveOneStopsReporting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agent processes")
	}
	bin := mmsBinary(t) // built before the test changes directory
	f := newOperatorFixture(t)
	pub := strings.TrimSpace(readFile(t, f.pub))
	v1 := f.repo.publish(t, "web", "1.0.0")
	v2 := f.repo.publish(t, "web", "2.0.0")
	v2.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(30 * time.Second)}
	v2.Rollout = &spec.Rollout{Waves: []string{"1", "100%"}, Pause: spec.Duration(time.Hour)}
	ids := []string{"a.example.net", "b.example.net", "c.example.net"}
	first := rollout.Assign(ids, "web", v2.Checksum, mustParseWaves(t, v2.Rollout.Waves))[0][0]
	// The agent with the embedded server must outlive the one killed.
	server := slices.IndexFunc(ids, func(id string) bool { return id != first })
	ids[0], ids[server] = ids[server], ids[0]

	common := []string{"--public-key", pub, "--allow-http", "--status-interval", "500ms"}
	state := func(i int) string { return filepath.Join(f.dir, fmt.Sprintf("state-%d", i)) }
	agents := map[string]*proc{}
	agents[ids[0]] = startMMS(t, nil, append([]string{"agent", "--state-dir", state(0), "--identity", ids[0], "--listen", "127.0.0.1:0"}, common...)...)
	waitFor(t, agents[ids[0]].stderr, "listening on")
	conn := loginOf(t, state(0)).flags()
	for i := 1; i < len(ids); i++ {
		agents[ids[i]] = startMMS(t, nil, append(append([]string{"agent", "--state-dir", state(i), "--identity", ids[i]}, conn...), common...)...)
	}
	for _, id := range ids {
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			if d.Seen == nil {
				return fmt.Errorf("%s has not reported yet", id)
			}
			return nil
		})
	}
	serial := uint64(time.Now().Unix())
	put := func(wait bool, e spec.Machine) {
		t.Helper()
		writeMachines(t, f.dir, e)
		serial++
		env := mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--allow-http", "--serial", fmt.Sprint(serial)).stdout
		args := append([]string{"put"}, conn...)
		if wait {
			args = append(args, "--wait", "60s")
		}
		mmsOK(t, env, args...)
	}
	put(true, v1)

	// 2.0.0: wave 1 installs it and runs it healthy; wave 2 pauses.
	put(false, v2)
	entryOf := func(d *nodestatus.Document) nodestatus.Entry {
		for _, e := range d.Entries {
			if e.Name == "web" {
				return e
			}
		}
		return nodestatus.Entry{}
	}
	pollStatus(t, conn, first, func(d *nodestatus.Document) error {
		if e := entryOf(d); e.Installed != v2.Checksum || e.Health != "healthy" {
			return fmt.Errorf("%s: web %+v, want 2.0.0 healthy", first, e)
		}
		return nil
	})
	agents[first].signal(t, syscall.SIGKILL)

	// The agents of wave 2 wait for it by their own rule.
	halted := "held: waiting for wave 1 (node " + first + " stopped reporting)"
	for _, id := range ids {
		if id == first {
			continue
		}
		pollStatus(t, conn, id, func(d *nodestatus.Document) error {
			if e := entryOf(d); e.Outcome != "held" || e.Reason != halted || e.Installed != v1.Checksum {
				return fmt.Errorf("%s: web %+v, want it held on 1.0.0: %q", id, e, halted)
			}
			return nil
		})
	}

	// mms rollout status, the binary, says what the agents say.
	out, err := exec.CommandContext(t.Context(), bin, append([]string{"rollout", "status"}, conn...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mms rollout status: %v\n%s", err, out)
	}
	status := string(out)
	for _, want := range []string{
		"web: 1.0.0 → 2.0.0 (" + v2.Checksum[:12] + ")  waves 1, 100%, pause 1h0m0s\n",
		"under way: wave 1 of 2, waiting for node " + first + " stopped reporting\n",
	} {
		if !strings.Contains(status, want) {
			t.Errorf("mms rollout status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "HALTED") {
		t.Errorf("mms rollout status says the rollout halted while the agents wait:\n%s", status)
	}
	rows := regexp.MustCompile(`(?m)^1\s+1\s+` + regexp.QuoteMeta(first) + `\s+stale\s+2\.0\.0\s+no update for \d+s$`)
	if !rows.MatchString(status) {
		t.Errorf("mms rollout status does not show %s stale in wave 1:\n%s", first, status)
	}
	for _, id := range ids {
		if id != first && !regexp.MustCompile(`(?m)\s`+regexp.QuoteMeta(id)+`\s+held\s+1\.0\.0\s+waiting for wave 1 \(node `+regexp.QuoteMeta(first)+` stopped reporting\)$`).MatchString(status) {
			t.Errorf("mms rollout status does not show %s held, waiting:\n%s", id, status)
		}
	}

	out, err = exec.CommandContext(t.Context(), bin, append([]string{"rollout", "status", "--json"}, conn...)...).Output()
	if err != nil {
		t.Fatalf("mms rollout status --json: %v\n%s", err, out)
	}
	var views []struct {
		Halted      bool     `json:"halted"`
		HaltedAt    int      `json:"halted_at"`
		NewVersion  string   `json:"new_version"`
		OldVersions []string `json:"old_versions"`
		Current     int      `json:"current_wave"`
		Waves       []struct {
			Decision struct {
				Held    string `json:"held"`
				Waiting struct {
					Node  string `json:"node"`
					Stale bool   `json:"stale"`
				} `json:"waiting"`
			} `json:"decision"`
		} `json:"waves"`
	}
	if err := json.Unmarshal(out, &views); err != nil || len(views) != 1 {
		t.Fatalf("mms rollout status --json = %s (%v), want one rollout", out, err)
	}
	v := views[0]
	if v.Halted || v.Current != 1 || v.NewVersion != "2.0.0" || !slices.Equal(v.OldVersions, []string{"1.0.0"}) ||
		len(v.Waves) != 2 || v.Waves[1].Decision.Held != halted || v.Waves[1].Decision.Waiting.Node != first || !v.Waves[1].Decision.Waiting.Stale {
		t.Errorf("mms rollout status --json = %s\nwant wave 2 waiting for %s, which stopped reporting, 1.0.0 → 2.0.0, wave 2 told %q", out, first, halted)
	}
}
