package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
)

// operatorFixture is an operator's working directory (the current one):
// a signing key pair, machines.json, an archive repository, and the state
// directory of the agent under test.
type operatorFixture struct {
	dir, keyFile, pub, state string
	repo                     *archiveRepo
	sign                     []string // mms pack's signing flags
}

// newOperatorFixture makes a fresh one and changes into its directory.
func newOperatorFixture(t *testing.T) *operatorFixture {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	keyFile, pub := newKeyPair(t, dir, "ops")
	return &operatorFixture{dir: dir, keyFile: keyFile, pub: pub, state: filepath.Join(dir, "state"),
		repo: newArchiveRepo(t), sign: []string{"--key-file", keyFile, "--allow-http"}}
}

// testAgent is one run of `mms agent` with the embedded server, on a
// state directory that outlives it.
type testAgent struct {
	login  agentLogin
	errOut *syncbuf.Buffer
	stop   func() int
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
}

// testAgentArgs are the flags of a test agent on state.
func testAgentArgs(t *testing.T, pub, state string, extra ...string) []string {
	t.Helper()
	return append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--allow-http", "--identity", "web1", "--status-interval", "500ms"}, extra...)
}

// startTestAgent starts an agent on state with extra flags, in this
// process, and connects to its embedded server.
func startTestAgent(t *testing.T, pub, state string, extra ...string) *testAgent {
	t.Helper()
	_, errOut, stop := runUntil(t, testAgentArgs(t, pub, state, extra...)...)
	agentURL(t, errOut) // the agent listens
	return connectTestAgent(t, state, errOut, stop)
}

// startTestAgentProcess is startTestAgent with a real agent process (the
// built mms binary); stop sends it SIGTERM and waits for its exit code.
func startTestAgentProcess(t *testing.T, pub, state string, extra ...string) *testAgent {
	t.Helper()
	p := startMMS(t, nil, testAgentArgs(t, pub, state, extra...)...)
	agentURL(t, p.stderr)
	return connectTestAgent(t, state, p.stderr, func() int {
		p.signal(t, syscall.SIGTERM)
		return p.wait(t)
	})
}

// connectTestAgent connects to the embedded server of the agent on state.
func connectTestAgent(t *testing.T, state string, errOut *syncbuf.Buffer, stop func() int) *testAgent {
	t.Helper()
	a := &testAgent{login: loginOf(t, state), errOut: errOut, stop: stop}
	a.nc = a.login.connect(t)
	var err error
	if a.js, err = jetstream.New(a.nc); err != nil {
		t.Fatal(err)
	}
	if a.kv, err = a.js.KeyValue(t.Context(), mmsmanager.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	return a
}

// shutdown stops the agent and checks it exited cleanly.
func (a *testAgent) shutdown(t *testing.T) {
	t.Helper()
	a.nc.Close()
	if code := a.stop(); code != 0 {
		t.Fatalf("agent exit code = %d, want 0; stderr:\n%s", code, a.errOut.String())
	}
}

// rawPut writes an envelope to the spec key the way `nats kv put` does:
// none of mms put's checks.
func (a *testAgent) rawPut(t *testing.T, envelope []byte) {
	t.Helper()
	if _, err := a.kv.Put(t.Context(), mmsmanager.DefaultKey, envelope); err != nil {
		t.Fatal(err)
	}
}

// specEvent is the part of the manager's state event these tests read.
type specEvent struct {
	Serial   uint64                  `json:"serial"`
	Rejected string                  `json:"rejected"`
	Reason   string                  `json:"reason"`
	Results  []manager.MachineResult `json:"results"`
	Omitted  int                     `json:"omitted_results"`
}

// waitSpecEvent polls for the manager's last state event to be about
// serial and pass ok.
func (a *testAgent) waitSpecEvent(t *testing.T, serial uint64, ok func(specEvent) error) specEvent {
	t.Helper()
	var got specEvent
	natstest.Eventually(t, e2eTimeout, func() error {
		events, err := a.js.Stream(t.Context(), agent.EventsStream)
		if err != nil {
			return err
		}
		msg, err := events.GetLastMsgForSubject(t.Context(), agent.WatcherStateSubject("machines"))
		if err != nil {
			return err
		}
		var ev struct {
			Data specEvent `json:"data"`
		}
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			return err
		}
		got = ev.Data
		if got.Serial != serial {
			return fmt.Errorf("last machines event is about serial %d, want %d", got.Serial, serial)
		}
		return ok(got)
	})
	return got
}

// rejectedAs returns a check that the event rejected the spec as kind with
// a reason containing msg.
func rejectedAs(kind manager.Rejection, msg string) func(specEvent) error {
	return func(ev specEvent) error {
		if ev.Rejected != string(kind) || !strings.Contains(ev.Reason, msg) {
			return fmt.Errorf("event rejected %q (%s), want %q containing %q", ev.Rejected, ev.Reason, kind, msg)
		}
		return nil
	}
}

// installedVersion returns a check that the installed web machine is at
// version.
func installedVersion(t *testing.T, state, version string) error {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(state, "machines", "web", "machine.yaml"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(got), "version: "+version) {
		return fmt.Errorf("installed web machine.yaml is\n%s\nwant version %s", got, version)
	}
	return nil
}
