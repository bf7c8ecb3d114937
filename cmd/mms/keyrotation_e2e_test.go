package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
)

// rotationAgent is one agent of the key rotation test: a client of the
// shared server, restarted with new trusted keys.
type rotationAgent struct {
	identity, state, trusted string
	stop                     func() int
	errOut                   *syncbuf.Buffer
}

// start (re)starts the agent with the keys in keys (public key files).
func (a *rotationAgent) start(t *testing.T, url string, keys ...string) {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, strings.TrimSpace(readFile(t, k)))
	}
	if err := os.WriteFile(a.trusted, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a.stop != nil {
		if code := a.stop(); code != 0 {
			t.Fatalf("agent %s exit code %d:\n%s", a.identity, code, a.errOut.String())
		}
	}
	_, errOut, stop := runUntil(t, "agent", "--server", url, "--trusted-keys", a.trusted, "--state-dir", a.state,
		"--identity", a.identity, "--allow-http", "--status-interval", "500ms")
	a.stop, a.errOut = stop, errOut
}

// TestKeyRotationWithoutGap follows the documented rotation (README,
// docs/nats-permissions.md) across two real agents: sign with the old and
// the new key, trust both everywhere (one agent at a time), trust only the
// new key everywhere, sign with the new key only. At every step, with the
// agents on different trust sets, every agent applies the newest spec; in
// the end a spec signed by the old key alone is refused.
func TestKeyRotationWithoutGap(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	oldKey, oldPub := newKeyPair(t, dir, "old")
	srv := natstest.RunJetStream(t)
	url := srv.ClientURL()
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Every refusal any agent reports, as "identity serial rejection".
	var mu sync.Mutex
	var refusals []string
	sub, err := nc.Subscribe(agent.WatcherStateSubject("machines"), func(m *nats.Msg) {
		var ev struct {
			Data struct {
				Identity string `json:"identity"`
				Serial   uint64 `json:"serial"`
				Rejected string `json:"rejected"`
			} `json:"data"`
		}
		// spec_missing is before the first spec: nothing to refuse yet.
		if json.Unmarshal(m.Data, &ev) == nil && ev.Data.Rejected != "" && ev.Data.Rejected != string(manager.RejectMissing) {
			mu.Lock()
			refusals = append(refusals, fmt.Sprintf("%s %d %s", ev.Data.Identity, ev.Data.Serial, ev.Data.Rejected))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, b := range []string{mmsmanager.DefaultBucket, nodestatus.Bucket} {
		if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: b, History: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: agent.EventsStream, Subjects: []string{agent.EventsSubjects}, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	repo := newArchiveRepo(t)
	agents := []*rotationAgent{
		{identity: "web1", state: filepath.Join(dir, "web1"), trusted: filepath.Join(dir, "web1.keys")},
		{identity: "web2", state: filepath.Join(dir, "web2"), trusted: filepath.Join(dir, "web2.keys")},
	}
	for _, a := range agents {
		a.start(t, url, oldPub)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, a := range agents {
				t.Logf("agent %s log:\n%s", a.identity, a.errOut.String())
			}
		}
	})
	version := 0
	serial := uint64(time.Now().Unix())
	// publish signs the next version with keys and waits until every
	// agent runs it.
	publish := func(step string, keys ...string) {
		t.Helper()
		version++
		v := fmt.Sprintf("%d.0.0", version)
		writeMachines(t, dir, repo.publish(t, "web", v))
		args := []string{"--allow-http", "--serial", fmt.Sprint(serial + uint64(version))}
		for _, k := range keys {
			args = append(args, "--key-file", k)
		}
		packPut(t, args, []string{"--server", url})
		for _, a := range agents {
			natstest.Eventually(t, e2eTimeout, func() error {
				if err := installedVersion(t, a.state, v); err != nil {
					return fmt.Errorf("%s: %s: %w", step, a.identity, err)
				}
				return nil
			})
		}
	}

	publish("before the rotation", oldKey)
	newKey, newPub := newKeyPair(t, dir, "new")
	publish("signed with both, trusted: old everywhere", oldKey, newKey)
	agents[0].start(t, url, oldPub, newPub)
	publish("signed with both, web1 trusts both, web2 the old one", oldKey, newKey)
	agents[1].start(t, url, oldPub, newPub)
	publish("signed with both, both trust both", oldKey, newKey)
	agents[0].start(t, url, newPub)
	publish("signed with both, web1 trusts the new one, web2 both", oldKey, newKey)
	agents[1].start(t, url, newPub)
	publish("signed with both, both trust the new one", oldKey, newKey)
	publish("signed with the new key only", newKey)

	// The old key is retired: a spec it alone signs is refused everywhere,
	// by mms put first (the agents report whom they trust), then, put
	// with --force, by each agent.
	retired := serial + 100
	writeMachines(t, dir, repo.publish(t, "web", "99.0.0"))
	env := mmsOK(t, "", "pack", "machines.json", "--allow-http", "--key-file", oldKey, "--serial", fmt.Sprint(retired)).stdout
	if r := mms(t, env, "put", "--server", url); r.code != 1 || !strings.Contains(r.stderr, "no reporting agent trusts a key this spec claims to be signed by") {
		t.Errorf("put of the retired key's spec: exit %d, stderr %q; want refused", r.code, r.stderr)
	}
	mmsOK(t, env, "put", "--server", url, "--force")
	want := []string{fmt.Sprintf("web1 %d unknown_key", retired), fmt.Sprintf("web2 %d unknown_key", retired)}
	natstest.Eventually(t, e2eTimeout, func() error {
		mu.Lock()
		defer mu.Unlock()
		got := slices.Sorted(slices.Values(refusals))
		if !slices.Equal(got, want) {
			return fmt.Errorf("refusals = %v, want only the retired key's spec: %v", got, want)
		}
		return nil
	})
	for _, a := range agents {
		if err := installedVersion(t, a.state, fmt.Sprintf("%d.0.0", version)); err != nil {
			t.Errorf("%s after the retired key's spec: %v", a.identity, err)
		}
		if code := a.stop(); code != 0 {
			t.Errorf("%s exit code %d", a.identity, code)
		}
	}
}
