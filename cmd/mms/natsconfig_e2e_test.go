package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// fleetServer is a nats-server started with exactly the configuration
// `mms nats-config` wrote, and the seed files of its users.
type fleetServer struct {
	url  string
	seed func(user string) string // the seed file of a user
}

// startFleetServer runs `mms nats-config` for nodes and starts a real
// nats-server from the file it wrote.
func startFleetServer(t *testing.T, dir string, nodes ...string) *fleetServer {
	t.Helper()
	conf := filepath.Join(dir, "nats")
	args := []string{"nats-config", "--out", conf, "--governor", "downloads", "--archive-bucket", "ARCHIVES",
		"--listen", "127.0.0.1:0", "--store", filepath.Join(dir, "jetstream")}
	for _, n := range nodes {
		args = append(args, "--node", n)
	}
	mmsOK(t, "", args...)
	opts, err := server.ProcessConfigFile(filepath.Join(conf, natsConfigFile))
	if err != nil {
		t.Fatalf("nats-server refuses the generated configuration: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv := natstest.Run(t, opts)
	return &fleetServer{url: srv.ClientURL(), seed: func(user string) string { return filepath.Join(conf, user+".nk") }}
}

// as returns the CLI flags to connect as user.
func (f *fleetServer) as(user string) []string {
	return []string{"--server", f.url, "--nkey", f.seed(user)}
}

// connect connects as user; the connection's asynchronous errors (the
// permission violations) are kept in LastError, not printed.
func (f *fleetServer) connect(t *testing.T, user string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(f.seed(user))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(f.url, opt, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// denied runs op with a short deadline and fails the test unless it
// failed and the server reported a permissions violation for it.
func denied(t *testing.T, nc *nats.Conn, what string, op func(ctx context.Context) error) {
	t.Helper()
	before := nc.LastError()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	err := op(ctx)
	if err == nil {
		t.Errorf("%s: allowed, want denied", what)
		return
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		after := nc.LastError()
		if after == before || !errors.Is(after, nats.ErrPermissionViolation) {
			return fmt.Errorf("%s failed with %v but the server reported no permissions violation (last error %v)", what, err, after)
		}
		return nil
	})
}

// setUpFleet does what the admin does once, as docs/nats-permissions.md
// says: mms init (the spec and status buckets, the events stream, the
// archive store and the governor).
func setUpFleet(t *testing.T, f *fleetServer, _ jetstream.JetStream) {
	t.Helper()
	mmsOK(t, "", append([]string{"init", "--governor", "downloads=2", "--archive-bucket", "ARCHIVES"}, f.as("admin")...)...)
}

// newFleet builds the binary, changes into a fresh directory with the
// operator's key pair, and starts a fleet server for nodes, set up as the
// admin does. It returns the directory, the key file, the public key file
// and the server.
func newFleet(t *testing.T, nodes ...string) (dir, keyFile, pub string, f *fleetServer) {
	t.Helper()
	mmsBinary(t) // built before the test changes directory
	dir = t.TempDir()
	t.Chdir(dir)
	keyFile, pub = newKeyPair(t, dir, "ops")
	f = startFleetServer(t, dir, nodes...)
	_, adminJS := f.connect(t, "admin")
	setUpFleet(t, f, adminJS)
	return dir, keyFile, pub, f
}

// startNode starts a real agent process for identity, logging in as its
// node user, trusting pub, with its state in dir.
func (f *fleetServer) startNode(t *testing.T, dir, pub, identity string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", filepath.Join(dir, "state-"+identity),
		"--identity", identity, "--status-interval", "1s"}, f.as(nodeUser(identity))...)
	return startMMS(t, nil, append(args, extra...)...)
}

// TestNatsConfigLeastPrivilege is issue 18's least-privilege deliverable:
// a real nats-server runs exactly the configuration `mms nats-config`
// writes; an agent with its node user installs a machine from the object
// store through a governor, writes its status and answers nudges and
// transition requests, with no permissions violation; the operator
// publishes, reads and fires transitions; and the node user cannot write
// the spec, other nodes' status, buckets or streams, nor request a
// transition.
func TestNatsConfigLeastPrivilege(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	keyFile, pub := newKeyPair(t, dir, "ops")
	f := startFleetServer(t, dir, "web1", "web2")
	_, adminJS := f.connect(t, "admin")
	setUpFleet(t, f, adminJS)

	// The operator uploads an archive and publishes a spec naming it and
	// the governor.
	mdir := filepath.Join(dir, "web")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, mdir, "machine.yaml", runnableMachineYAML("web", "1.0.0"))
	if err := os.WriteFile(filepath.Join(mdir, "check.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := mmsOK(t, "", append([]string{"archive", "create", mdir, "--out", filepath.Join(dir, "web.tar.gz"), "--upload", "nats://ARCHIVES"}, f.as("operator")...)...)
	var entry spec.Machine
	if err := json.Unmarshal([]byte(r.stdout), &entry); err != nil {
		t.Fatalf("archive create printed %q: %v", r.stdout, err)
	}
	entry.Governor = "downloads"
	writeMachines(t, dir, entry)
	serial := packPut(t, []string{"--key-file", keyFile}, f.as("operator"))

	// The node.
	state := filepath.Join(dir, "state")
	_, errOut, stop := runUntil(t, append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--identity", "web1", "--status-interval", "500ms"}, f.as("node-web1")...)...)
	natstest.Eventually(t, e2eTimeout, func() error { return installedVersion(t, state, "1.0.0") })
	natstest.Eventually(t, e2eTimeout, func() error {
		r := mms(t, "", append([]string{"status", "--json"}, f.as("operator")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, `"identity": "web1"`) || !strings.Contains(r.stdout, fmt.Sprintf(`"serial": %d`, serial)) {
			return fmt.Errorf("operator's mms status --json: exit %d %s %s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	if r := mmsOK(t, "", append([]string{"reconcile", "--wait", "500ms"}, f.as("operator")...)...); r.stdout != "nudged 1 node: web1\n" {
		t.Errorf("operator's mms reconcile = %q", r.stdout)
	}
	// The operator fires a transition; the node answers on its reply
	// subject, without a permissions violation.
	transition := func(name, want string) {
		t.Helper()
		r := mmsOK(t, "", append([]string{"machine", "transition", "--identity", "^web1$", mmsmanager.MachineName, name}, f.as("operator")...)...)
		if r.stdout != want {
			t.Errorf("operator's mms machine transition %s = %q, want %q", name, r.stdout, want)
		}
	}
	transition("enter_maintenance", "NODE  RESULT        DETAIL\nweb1  transitioned  mms_manager: MANAGE -> MAINTENANCE\n")
	transition("resume", "NODE  RESULT        DETAIL\nweb1  transitioned  mms_manager: MAINTENANCE -> MANAGE\n")
	evOut, evErr, stopEvents := runUntil(t, append([]string{"events", "--since", "1h"}, f.as("operator")...)...)
	waitFor(t, evOut, "web1 mms_manager", "machines machines")
	if code := stopEvents(); code != 0 || strings.Contains(strings.ToLower(evErr.String()), "permission") {
		t.Errorf("operator's mms events --since: exit %d, stderr %s", code, evErr.String())
	}

	// What the node user may not do.
	nc, js := f.connect(t, "node-web1")
	ctx := t.Context()
	spec, err := js.KeyValue(ctx, mmsmanager.DefaultBucket)
	if err != nil {
		t.Fatalf("node reads the spec bucket: %v", err)
	}
	before, err := spec.Get(ctx, mmsmanager.DefaultKey)
	if err != nil {
		t.Fatalf("node reads the spec: %v", err)
	}
	status, err := js.KeyValue(ctx, nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := status.Put(ctx, nodestatus.Key("web1"), []byte(`{}`)); err != nil {
		t.Errorf("node writes its own status key: %v", err)
	}
	denied(t, nc, "write the spec", func(ctx context.Context) error {
		_, err := spec.Put(ctx, mmsmanager.DefaultKey, []byte("forged"))
		return err
	})
	denied(t, nc, "delete the spec", func(ctx context.Context) error { return spec.Delete(ctx, mmsmanager.DefaultKey) })
	denied(t, nc, "write another node's status", func(ctx context.Context) error {
		_, err := status.Put(ctx, nodestatus.Key("web2"), []byte(`{"identity":"web2"}`))
		return err
	})
	denied(t, nc, "delete the spec bucket", func(ctx context.Context) error { return js.DeleteKeyValue(ctx, mmsmanager.DefaultBucket) })
	denied(t, nc, "delete the status bucket", func(ctx context.Context) error { return js.DeleteKeyValue(ctx, nodestatus.Bucket) })
	denied(t, nc, "create a bucket", func(ctx context.Context) error {
		_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "FILLER"})
		return err
	})
	denied(t, nc, "delete the events stream", func(ctx context.Context) error { return js.DeleteStream(ctx, agent.EventsStream) })
	denied(t, nc, "purge the events stream", func(ctx context.Context) error {
		s, err := adminJS.Stream(ctx, agent.EventsStream)
		if err != nil {
			return err
		}
		node, err := js.Stream(ctx, s.CachedInfo().Config.Name)
		if err != nil {
			return err
		}
		return node.Purge(ctx)
	})
	denied(t, nc, "delete a message of the spec stream", func(ctx context.Context) error {
		s, err := adminJS.Stream(ctx, "KV_"+mmsmanager.DefaultBucket)
		if err != nil {
			return err
		}
		// The node's own handle on the stream, through the admin's info.
		node, err := js.Stream(ctx, s.CachedInfo().Config.Name)
		if err != nil {
			return err
		}
		return node.DeleteMsg(ctx, before.Revision())
	})
	denied(t, nc, "change the governor", func(ctx context.Context) error {
		_, err := governor.Add(ctx, js, "downloads", 100, time.Hour, 1)
		return err
	})
	denied(t, nc, "upload an archive", func(ctx context.Context) error {
		obs, err := js.ObjectStore(ctx, "ARCHIVES")
		if err != nil {
			return err
		}
		_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: "web-1.0.0.tar.gz"}, bytes.NewReader([]byte("evil")))
		return err
	})
	denied(t, nc, "send a reconcile nudge", func(ctx context.Context) error {
		if err := nc.Publish(manager.NudgeSubject, nil); err != nil {
			return err
		}
		return errors.New("published; only the server can tell")
	})
	denied(t, nc, "request a transition on another node", func(ctx context.Context) error {
		_, err := agent.RequestTransition(ctx, nc, agent.TransitionRequest{Machine: mmsmanager.MachineName, Transition: "enter_maintenance"}, 500*time.Millisecond, nil)
		if err != nil {
			return err
		}
		return errors.New("published; only the server can tell")
	})

	// Nothing changed.
	after, err := spec.Get(ctx, mmsmanager.DefaultKey)
	if err != nil || after.Revision() != before.Revision() || !bytes.Equal(after.Value(), before.Value()) {
		t.Errorf("spec after the node's attempts = %v, %v; want revision %d unchanged", after, err, before.Revision())
	}
	if _, err := status.Get(ctx, nodestatus.Key("web2")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("web2's status after web1's attempt: %v, want none", err)
	}
	for _, s := range []string{"KV_" + mmsmanager.DefaultBucket, "KV_" + nodestatus.Bucket, agent.EventsStream, "OBJ_ARCHIVES", governor.Stream("downloads")} {
		if _, err := adminJS.Stream(ctx, s); err != nil {
			t.Errorf("stream %s after the node's attempts: %v", s, err)
		}
	}

	// What the configuration cannot prevent: machine events carry no
	// identity the server checks, so web1 can publish one claiming web2.
	forged := fmt.Sprintf(`{"specversion":"1.0","id":"x","source":"%s","type":"%s","subject":"web2","data":{"identity":"web2"}}`, agent.EventSource, agent.TransitionEventType)
	if err := nc.Publish(agent.TransitionSubject, []byte(forged)); err != nil || nc.FlushTimeout(time.Second) != nil {
		t.Errorf("node publishes a machine event: %v", err)
	}

	if s := strings.ToLower(errOut.String()); strings.Contains(s, "permissions violation") || strings.Contains(s, "permission denied") {
		t.Errorf("the agent hit a permissions violation with its node user:\n%s", errOut.String())
	}
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d; stderr:\n%s", code, errOut.String())
	}
}
