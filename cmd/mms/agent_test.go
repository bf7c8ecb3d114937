package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/provision"
)

// testMachine is compiled into the test binary the way the manager is into
// mms: a factory that builds it from the node's settings. Its one watcher
// (mmsclitest, see machine_test.go) reports what the factory saw, so tests
// can check the Node the agent built from its flags.
const testMachine = "mmsagenttest"

func init() {
	agent.RegisterMachineFactory(testMachine, func(n agent.Node) (*machine.Definition, error) {
		m, _ := agent.Setting[manager.Settings](n)
		msg := fmt.Sprintf(`"keys=%d threshold=%d spec=%s/%s insecure=%v identity=%s verify=%v"`,
			len(m.Trust.Keys()), m.Trust.Threshold(), m.Bucket, m.Key, m.Trust.Unsigned(), n.Identity, m.VerifyInterval)
		return machine.Parse([]byte(greeterMachine(testMachine, "1.0.0", msg)))
	})
}

// listenPattern finds the embedded server's URL in the agent's banner.
var listenPattern = regexp.MustCompile(`listening on (nats://\S+)`)

// agentURL waits for the agent's banner and returns the server URL in it.
func agentURL(t *testing.T, errOut *syncbuf.Buffer) string {
	t.Helper()
	var url string
	natstest.Eventually(t, 30*time.Second, func() error {
		m := listenPattern.FindStringSubmatch(errOut.String())
		if m == nil {
			return errors.New("no listening line yet:\n" + errOut.String())
		}
		url = m[1]
		return nil
	})
	return url
}

// agentLogin is how to log in to the embedded server of an agent: its URL
// and the files its local context names (the nkey seed, the pinned server
// certificate), as the local operator's tools and other agents do.
type agentLogin struct {
	url, seed, ca string
}

// loginOf reads the login of the agent with state dir from the context
// it keeps there.
func loginOf(tb testing.TB, state string) agentLogin {
	tb.Helper()
	c, err := natsbox.LoadContextFile(filepath.Join(state, natsbox.LocalContextFile))
	if err != nil {
		tb.Fatal(err)
	}
	if c.NKey == "" || c.CA == "" {
		tb.Fatalf("the agent's context %s names no nkey seed or no CA: %+v", c.Path, c)
	}
	return agentLogin{url: c.URL, seed: c.NKey, ca: c.CA}
}

// flags are the connection flags of mms commands and client agents.
func (l agentLogin) flags() []string {
	return []string{"--server", l.url, "--nkey", l.seed, "--tls-ca", l.ca}
}

// connect connects with the login; the connection closes when the test
// ends.
func (l agentLogin) connect(tb testing.TB, extra ...nats.Option) *nats.Conn {
	tb.Helper()
	nkey, err := nats.NkeyOptionFromSeed(l.seed)
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(l.url, append([]nats.Option{nkey, nats.RootCAs(l.ca)}, extra...)...)
	if err != nil {
		tb.Fatalf("connect to the agent's server with its credentials: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// agentConn connects to the embedded server of the agent with state dir,
// with the credentials it keeps there, as a local operator's tools do; the
// connection closes when the test ends.
func agentConn(tb testing.TB, state string) *nats.Conn {
	tb.Helper()
	return loginOf(tb, state).connect(tb)
}

// statusDoc polls the agent's status document until ok accepts it.
func statusDoc(t *testing.T, js jetstream.JetStream, identity string, ok func(*nodestatus.Document) error) *nodestatus.Document {
	t.Helper()
	var doc *nodestatus.Document
	natstest.Eventually(t, 30*time.Second, func() error {
		kv, err := js.KeyValue(t.Context(), nodestatus.Bucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(t.Context(), nodestatus.Key(identity))
		if err != nil {
			return err
		}
		if doc, err = nodestatus.ParseDocument(e.Value()); err != nil {
			return err
		}
		return ok(doc)
	})
	return doc
}

// machineIn returns an error unless doc lists machine name in state.
func machineIn(doc *nodestatus.Document, name, state string) error {
	for _, m := range doc.Machines {
		if m.Name == name {
			if m.State != state {
				return fmt.Errorf("machine %s is in %q, want %q", name, m.State, state)
			}
			return nil
		}
	}
	return fmt.Errorf("machine %s not in the status document: %+v", name, doc.Machines)
}

func TestAgentRefusesBadTrust(t *testing.T) {
	dir := t.TempDir()
	_, pub := newKeyPair(t, dir, "ops")
	pubHex := strings.TrimSpace(readFile(t, pub))
	badFile := writeFile(t, dir, "trusted.keys", "# ops\n"+pubHex+"\n\nnot-a-key\n")
	state := filepath.Join(dir, "state")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no key", nil, []string{"no trusted public key", "--public-key HEX", "--insecure-unsigned"}},
		{"bad key", []string{"--public-key", pubHex, "--public-key", "abc"}, []string{"--public-key #2"}},
		{"key file given as a key", []string{"--public-key", pub}, []string{"--public-key #1", "use --trusted-keys FILE"}},
		{"bad line in the key file", []string{"--trusted-keys", badFile}, []string{"--trusted-keys: " + badFile + ":4:"}},
		{"threshold above the keys", []string{"--public-key", pubHex, "--public-key", pubHex, "--threshold", "2"}, []string{"--threshold 2 exceeds the 1 distinct trusted key"}},
		{"verify interval too short", []string{"--public-key", pubHex, "--verify-interval", "5s"}, []string{"--verify-interval 5s: want at least 1m0s"}},
		{"zero threshold", []string{"--public-key", pubHex, "--threshold", "0"}, []string{"--threshold 0"}},
		{"insecure with keys", []string{"--public-key", pubHex, "--insecure-unsigned"}, []string{"--insecure-unsigned with trusted keys"}},
		{"every problem at once", []string{"--public-key", "abc", "--listen", "nope", "--bucket", "a.b", "--status-interval", "1ms", "--log-level", "loud"},
			[]string{"--public-key #1", "--listen \"nope\"", "--bucket \"a.b\"", "--status-interval 1ms", "--log-level \"loud\""}},
		{"client flags without a server", []string{"--insecure-unsigned", "--creds", "x.creds"}, []string{"--creds is for connecting to a NATS server"}},
		{"bad facts", []string{"--insecure-unsigned", "--facts", filepath.Join(dir, "missing.yaml")}, []string{"--facts: read facts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"agent", "--state-dir", state, "--listen", "127.0.0.1:0"}, tt.args...)
			r := mms(t, "", args...)
			if r.code != 1 {
				t.Errorf("mms %v = exit %d, want 1; stderr:\n%s", args, r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("mms %v stderr = %q, want it to contain %q", args, r.stderr, w)
				}
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused agent created %s (stat: %v), want nothing on disk", state, err)
			}
		})
	}
}

func TestAgentInsecureWarns(t *testing.T) {
	state := t.TempDir()
	_, errOut, stop := runUntil(t, "agent", "--insecure-unsigned", "--state-dir", state, "--listen", "127.0.0.1:0", "--identity", "try")
	waitFor(t, errOut, "INSECURE: --insecure-unsigned is set", "mms pack machines.json --unsigned | mms put --state-dir "+state+"\n")
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
}

func TestAgentLogJSON(t *testing.T) {
	state := t.TempDir()
	_, errOut, stop := runUntil(t, "agent", "--insecure-unsigned", "--state-dir", state, "--listen", "127.0.0.1:0", "--log-json")
	waitFor(t, errOut, `"msg":"agent nats ready"`, `"next":"mms pack machines.json --unsigned | mms put --state-dir `+state+`"`)
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("agent --log-json printed a line that is not JSON: %q", line)
		}
	}
}

func TestAgentEmbedded(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	dir := t.TempDir()
	_, pub := newKeyPair(t, dir, "ops")
	state := filepath.Join(dir, "state")
	const identity = "node one"
	_, errOut, stop := runUntil(t, "agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--identity", identity, "--status-interval", "200ms", "--verify-interval", "10m")
	url := agentURL(t, errOut)
	waitFor(t, errOut, "mms pack machines.json --key-file ops.key | mms put --state-dir "+state+"\n")

	for _, d := range []string{state, filepath.Join(state, "machines"), filepath.Join(state, "data"), filepath.Join(state, "nats")} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s mode = %v, want 0700", d, st.Mode().Perm())
		}
	}

	// Only the credentials in the state directory let a client in: an nkey
	// seed, and the server's own certificate, which clients pin.
	for file, mode := range map[string]os.FileMode{natsbox.LocalContextFile: 0o600, natsbox.LocalSeedFile: 0o600, natsbox.LocalKeyFile: 0o600, natsbox.LocalCertFile: 0o644} {
		if st, err := os.Stat(filepath.Join(state, file)); err != nil || st.Mode().Perm() != mode {
			t.Errorf("stat %s = %v, %v; want mode %v", file, st, err, mode)
		}
	}
	if c, err := natsbox.LoadContextFile(filepath.Join(state, natsbox.LocalContextFile)); err != nil || c.Password != "" || c.User != "" ||
		c.NKey != filepath.Join(state, natsbox.LocalSeedFile) || c.CA != filepath.Join(state, natsbox.LocalCertFile) {
		t.Errorf("local context = %+v, %v; want the seed and the certificate, no password", c, err)
	}
	for name, c := range map[string]struct {
		opts []nats.Option
		want string
	}{
		"a client without credentials":                  {nil, "Authorization Violation"},
		"a client that wants TLS with the usual CAs":    {[]nats.Option{nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12})}, "certificate signed by unknown authority"},
		"a client that pins the server, no credentials": {[]nats.Option{nats.RootCAs(filepath.Join(state, natsbox.LocalCertFile))}, "Authorization Violation"},
	} {
		if nc, err := nats.Connect(url, c.opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("%s connects to the embedded server: %v, want %q", name, err, c.want)
		}
	}
	nc := agentConn(t, state)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The embedded server holds what mms init would make on one server,
	// with the embedded sizes, the archive store included.
	checked, err := provision.Check(ctx, js, provision.Embedded(""))
	if err != nil || provision.Summary(checked) != "4 resources: 4 ok" {
		t.Errorf("embedded server's resources: %v, %v; want the 4 of provision.Embedded", provision.Summary(checked), err)
	}
	if _, err := js.ObjectStore(ctx, provision.DefaultArchiveBucket); err != nil {
		t.Errorf("archive store: %v", err)
	}
	events, err := js.Stream(ctx, agent.EventsStream)
	if err != nil {
		t.Fatalf("events stream: %v", err)
	}
	if cfg := events.CachedInfo().Config; cfg.MaxAge != 24*time.Hour || cfg.Discard != jetstream.DiscardOld || cfg.Subjects[0] != agent.EventsSubjects {
		t.Errorf("events stream config = %+v, want 24h, discard old, %s", cfg, agent.EventsSubjects)
	}

	// The compiled-in machine runs with the Node built from the flags, and
	// its events land in the stream.
	natstest.Eventually(t, 30*time.Second, func() error {
		msg, err := events.GetLastMsgForSubject(ctx, agent.WatcherStateSubject("mmsclitest"))
		if err != nil {
			return err
		}
		if want := "keys=1 threshold=1 spec=MACHINES/machines insecure=false identity=node one verify=10m0s"; !bytes.Contains(msg.Data, []byte(want)) {
			return fmt.Errorf("event %s lacks %q", msg.Data, want)
		}
		return nil
	})

	first := statusDoc(t, js, identity, func(d *nodestatus.Document) error { return machineIn(d, testMachine, "done") })
	if first.Identity != identity || !first.NATS.Connected || first.Heartbeat != "200ms" {
		t.Errorf("status document = %+v, want identity %q, connected, heartbeat 200ms", first, identity)
	}
	statusDoc(t, js, identity, func(d *nodestatus.Document) error {
		if !d.UpdatedAt.After(first.UpdatedAt) {
			return fmt.Errorf("updated_at %v not after %v yet", d.UpdatedAt, first.UpdatedAt)
		}
		return nil
	})
	nc.Close()

	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
	host := strings.TrimPrefix(url, "nats://")
	l, err := net.Listen("tcp", host)
	if err != nil {
		t.Errorf("port of the stopped agent's server: %v, want it free", err)
	} else {
		l.Close()
	}
	goleak.VerifyNone(t, leaks)

	// The last status write reached the store before the server stopped.
	srv := natstest.Run(t, natstest.Options(filepath.Join(state, "nats")))
	js2, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	last := statusDoc(t, js2, identity, func(*nodestatus.Document) error { return nil })
	if last.StoppedAt.IsZero() {
		t.Errorf("last status document = %+v, want stopped_at set", last)
	}
}

// With --server the agent is a client: NATS down at start does not stop
// its machines, it connects when NATS comes up, writes its status and
// creates nothing.
func TestAgentClientOfLateServer(t *testing.T) {
	url, port := natstest.DeadURL(t)

	const identity = "edge1"
	_, pub := newKeyPair(t, t.TempDir(), "ops")
	// At debug level the agent logs its machines' events, so the test sees
	// them run before NATS is up.
	_, errOut, stop := runUntil(t, "agent", "--server", url, "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", t.TempDir(),
		"--identity", identity, "--status-interval", "200ms", "--log-level", "debug")
	waitFor(t, errOut, "using NATS at "+url, "mmsclitest greeter success")

	opts := natstest.Options(t.TempDir())
	opts.Port = port
	srv := natstest.Run(t, opts)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	createStatusBucket(t, js)
	doc := statusDoc(t, js, identity, func(d *nodestatus.Document) error { return machineIn(d, testMachine, "done") })
	if !doc.NATS.Connected {
		t.Errorf("status document NATS = %+v, want connected", doc.NATS)
	}
	if _, err := js.KeyValue(t.Context(), "MACHINES"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("MACHINES bucket lookup = %v, want %v: a client agent creates nothing", err, jetstream.ErrBucketNotFound)
	}
	if _, err := js.Stream(t.Context(), agent.EventsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("events stream lookup = %v, want %v: a client agent creates nothing", err, jetstream.ErrStreamNotFound)
	}
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
