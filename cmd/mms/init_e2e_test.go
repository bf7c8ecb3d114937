package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/provision"
)

// mmsExec runs the built mms binary with args to its end and returns its
// exit code and output.
func mmsExec(t *testing.T, env []string, args ...string) result {
	t.Helper()
	p := startMMS(t, env, args...)
	code := p.wait(t)
	return result{code: code, stdout: p.stdout.String(), stderr: p.stderr.String()}
}

// fleetStreams are the streams `mms init --governor downloads=…` makes.
var fleetStreams = []string{"KV_MACHINES", "KV_MACHINES_STATUS", "CHORIA_MACHINE", "OBJ_ARCHIVES", "MMS_GOVERNOR_downloads"}

// streamReplicas returns each stream's replica count and how many of its
// replicas are placed (leader and followers), as `nats stream info` says.
func streamReplicas(t *testing.T, js jetstream.JetStream, streams ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range streams {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			out[name] = err.Error()
			continue
		}
		si := s.CachedInfo()
		placed := 0
		if si.Cluster != nil && si.Cluster.Leader != "" {
			placed = 1 + len(si.Cluster.Replicas)
		}
		out[name] = fmt.Sprintf("R%d, %d placed", si.Config.Replicas, placed)
	}
	return out
}

// portPattern finds a URL's port in output, which differs per run.
var portPattern = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// TestInitSingleServer runs the built binary against one server: more
// than one replica is refused before anything is made; without --replicas
// it makes every resource with one, prints each with its settings, makes
// nothing the second time, and --check passes, then names a change made
// behind its back and exits 2 until init is run again.
func TestInitSingleServer(t *testing.T) {
	s := natstest.RunJetStream(t)
	url := s.ClientURL()
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}

	r := mmsExec(t, nil, "init", "--server", url, "--replicas", "3")
	wantErr := fmt.Sprintf("mms: --replicas: 3 replicas: the NATS server is not part of a JetStream cluster: %s (nats://%s) keeps one copy of each stream; use --replicas 1, or run 3 or more servers in a cluster (README, A fleet)\n",
		s.Name(), strings.TrimPrefix(url, "nats://"))
	if r.code != 1 || r.stderr != wantErr || r.stdout != "" {
		t.Errorf("init --replicas 3 on one server = exit %d\nstdout %q\nstderr %q\nwant exit 1 and\n%q", r.code, r.stdout, r.stderr, wantErr)
	}
	if names := streamNames(t, js); len(names) != 0 {
		t.Errorf("after the refused init the server has streams %v, want none", names)
	}

	r = mmsExec(t, nil, "init", "--server", url, "--governor", "downloads=10/15m")
	want := `on nats://127.0.0.1:PORT (1 replica):
RESOURCE       NAME             STREAM                  REPLICAS  SETTINGS                                          RESULT
spec bucket    MACHINES         KV_MACHINES             1         history 5, values ≤ 1MiB, ≤ 64MiB in all          created
status bucket  MACHINES_STATUS  KV_MACHINES_STATUS      1         history 1, values ≤ 1MiB, ≤ 256MiB in all         created
events stream  CHORIA_MACHINE   CHORIA_MACHINE          1         ≤ 1GiB in all, kept 24h0m0s                       created
archives       ARCHIVES         OBJ_ARCHIVES            1         ≤ 2GiB in all                                     created
governor       downloads        MMS_GOVERNOR_downloads  1         10 slots, no size limit, slots freed after 15m0s  created
5 resources: 5 created
`
	if got := portPattern.ReplaceAllString(r.stdout, "127.0.0.1:PORT"); r.code != 0 || got != want {
		t.Errorf("init = exit %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, got, want)
	}
	r = mmsExec(t, nil, "init", "--server", url, "--governor", "downloads=10/15m")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "\n5 resources: 5 unchanged\n") {
		t.Errorf("init again = exit %d, stdout:\n%s\nwant every resource unchanged", r.code, r.stdout)
	}
	// An existing governor is kept when not named, and compared.
	r = mmsExec(t, nil, "init", "--check", "--server", url)
	if r.code != 0 || !strings.HasSuffix(r.stdout, "\n5 resources: 5 ok\n") || !strings.Contains(r.stdout, "MMS_GOVERNOR_downloads") {
		t.Errorf("init --check = exit %d, stdout:\n%s\nstderr:\n%s\nwant 5 ok", r.code, r.stdout, r.stderr)
	}

	// Someone shrinks the events stream and drops the spec's size cap.
	ev, err := js.Stream(t.Context(), "CHORIA_MACHINE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ev.CachedInfo().Config
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES", History: 5, MaxValueSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	r = mmsExec(t, nil, "init", "--check", "--server", url)
	wantCheck := []string{
		"spec bucket    MACHINES         KV_MACHINES ",
		"differs: max bytes none → 64MiB\n",
		"differs: max age 1h0m0s → 24h0m0s\n",
	}
	for _, w := range wantCheck {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("init --check after the change lacks %q:\n%s", w, r.stdout)
		}
	}
	if wantErr := "mms: 2 of 5 resources differ from what mms init would make (KV_MACHINES, CHORIA_MACHINE): run mms init with the same flags\n"; r.code != 2 || r.stderr != wantErr {
		t.Errorf("init --check after the change = exit %d, stderr %q; want 2 and %q", r.code, r.stderr, wantErr)
	}
	r = mmsExec(t, nil, "init", "--server", url)
	if r.code != 0 || !strings.Contains(r.stdout, "updated: max bytes none → 64MiB\n") || !strings.Contains(r.stdout, "updated: max age 1h0m0s → 24h0m0s\n") {
		t.Errorf("init after the change = exit %d, stdout:\n%s", r.code, r.stdout)
	}
	if r := mmsExec(t, nil, "init", "--check", "--server", url); r.code != 0 {
		t.Errorf("init --check after init = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Bad flags are refused, naming the flag, before NATS is asked.
	r = mmsExec(t, nil, "init", "--server", url, "--events-max-bytes", "lots", "--governor", "downloads")
	if r.code != 1 || !strings.Contains(r.stderr, `--events-max-bytes: size "lots"`) || !strings.Contains(r.stderr, `--governor "downloads": want NAME=LIMIT`) {
		t.Errorf("init with bad flags = exit %d, stderr %q", r.code, r.stderr)
	}
}

// streamNames lists the server's streams.
func streamNames(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	l := js.StreamNames(t.Context())
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestInitCluster runs the built binary against a real three-server
// cluster: a status bucket made the old way (one replica) is scaled to
// three, everything else is made with three (the default on a cluster),
// and every stream has three replicas placed.
func TestInitCluster(t *testing.T) {
	servers := natstest.RunCluster(t, 3)
	urls := natstest.ClientURLs(servers)
	js, err := jetstream.New(natstest.Connect(t, servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES_STATUS", History: 1, MaxValueSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	var r result
	natstest.Eventually(t, time.Minute, func() error { // a new cluster may still be placing
		r = mmsExec(t, nil, "init", "--server", urls, "--governor", "downloads=10")
		if r.code != 0 {
			return fmt.Errorf("init = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	if !strings.Contains(r.stdout, " (3 replicas):\n") || !strings.Contains(r.stdout, "updated: replicas 1 → 3; max bytes none → 256MiB") {
		t.Errorf("init on the cluster printed:\n%s\nwant 3 replicas and the status bucket scaled from 1", r.stdout)
	}
	natstest.Eventually(t, time.Minute, func() error {
		got := streamReplicas(t, js, fleetStreams...)
		for _, s := range fleetStreams {
			if got[s] != "R3, 3 placed" {
				return fmt.Errorf("stream replicas = %v, want R3, 3 placed each", got)
			}
		}
		return nil
	})
	natstest.Eventually(t, time.Minute, func() error {
		r := mmsExec(t, nil, "init", "--check", "--server", urls)
		if r.code != 0 {
			return fmt.Errorf("init --check = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
}

// createResource makes resource kind name of a one-replica fleet, as mms
// init does.
func createResource(t testing.TB, js jetstream.JetStream, kind, name string) {
	t.Helper()
	f := provision.Defaults()
	f.Replicas = 1
	if kind == provision.KindSpec {
		f.SpecBucket = name
	}
	if _, err := provision.Ensure(t.Context(), js, f, kind, name); err != nil {
		t.Fatal(err)
	}
}

// createStatusBucket makes the status bucket as mms init does.
func createStatusBucket(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	createResource(t, js, provision.KindStatus, nodestatus.Bucket)
	kv, err := js.KeyValue(t.Context(), nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestCreateFlagsFollowTheFleet: the commands that make one resource on
// their own make it as mms init would. On a cluster, put --create makes
// the spec bucket with three replicas, and status --create, archive
// create --upload and governor add then give theirs the spec bucket's
// three (each made one replica before, so one server's loss lost it). On
// a single server, put --create --replicas 3 is refused with mms's own
// message, not NATS's.
func TestCreateFlagsFollowTheFleet(t *testing.T) {
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	env := mmsOK(t, "", "pack", writeFile(t, dir, "machines.json", machinesJSON("facts")), "--key-file", key).stdout

	single := natstest.RunJetStream(t).ClientURL()
	r := mms(t, env, "put", "--server", single, "--create", "--replicas", "3")
	if r.code != 1 || !strings.Contains(r.stderr, "mms: --create: 3 replicas: the NATS server is not part of a JetStream cluster") {
		t.Errorf("put --create --replicas 3 on one server = exit %d, stderr %q", r.code, r.stderr)
	}

	servers := natstest.RunCluster(t, 3)
	urls := natstest.ClientURLs(servers)
	js, err := jetstream.New(natstest.Connect(t, servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, time.Minute, func() error { // a new cluster may still be placing
		if r := mms(t, env, "put", "--server", urls, "--create"); r.code != 0 {
			return fmt.Errorf("put --create = exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	mmsOK(t, "", "status", "--server", urls, "--create")
	mdir := machineDir(t, archiveMachineYAML("web", "1.0.0"))
	mmsOK(t, "", "archive", "create", mdir, "--out", filepath.Join(dir, "web.tgz"), "--upload", "nats://ARCHIVES", "--server", urls)
	mmsOK(t, "", "governor", "add", "downloads", "5", "--server", urls)
	natstest.Eventually(t, time.Minute, func() error {
		got := streamReplicas(t, js, "KV_MACHINES", "KV_MACHINES_STATUS", "OBJ_ARCHIVES", "MMS_GOVERNOR_downloads")
		for s, v := range got {
			if v != "R3, 3 placed" {
				return fmt.Errorf("stream replicas = %v, want R3, 3 placed each (%s)", got, s)
			}
		}
		return nil
	})
}
