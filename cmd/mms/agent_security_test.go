package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/nodestatus"
)

// nobody is the uid and gid the tests run attackers as.
const nobody = 65534

// asNobody makes cmd run as the unprivileged user nobody, or skips the
// test when this process cannot switch users.
func asNobody(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd
}

// publicBinary copies the mms binary into a directory every user can
// read, for processes run as another user.
func publicBinary(t *testing.T) string {
	t.Helper()
	return publicCopy(t, mmsBinary(t))
}

// TestEmbeddedServerShutsOutOtherUsers runs a real agent with the
// embedded server, then attacks it as a local user without its
// credentials: plain NATS clients without or with wrong credentials, and
// (when the test runs as root) mms commands run as the user nobody, who
// can reach the port but cannot read the state directory. None gets in,
// and the server's buckets, streams and spec are as they were.
func TestEmbeddedServerShutsOutOtherUsers(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	agentProc := startMMS(t, nil, agentArgs(t, state, "victim")...)
	agentProc.waitStderr(t, "agent started")
	url := listenPattern.FindStringSubmatch(agentProc.stderr.String())[1]

	owner := agentConn(t, state)
	js, err := jetstream.New(owner)
	if err != nil {
		t.Fatal(err)
	}
	before := storeView(t, js)

	// The server's certificate is no secret (any client sees it in the
	// handshake): these attackers accept it and try to log in (the others
	// below try without TLS).
	acceptAny := nats.Secure(&tls.Config{InsecureSkipVerify: true})
	guessed, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	guessedSeed, _ := guessed.Seed()
	guessedPub, _ := guessed.PublicKey()
	for name, opts := range map[string][]nats.Option{
		"no credentials":      nil,
		"guessed password":    {nats.UserInfo("mms", "password")},
		"another user's name": {nats.UserInfo("nobody", "")},
		"a made-up nkey": {nats.Nkey(guessedPub, func(nonce []byte) ([]byte, error) {
			kp, err := nkeys.FromSeed(guessedSeed)
			if err != nil {
				return nil, err
			}
			return kp.Sign(nonce)
		})},
	} {
		nc, err := nats.Connect(url, append(opts, acceptAny)...)
		if err == nil {
			nc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Errorf("connect with %s = %v, want an Authorization Violation", name, err)
		}
	}

	t.Run("mms commands as nobody", func(t *testing.T) {
		bin := publicBinary(t)
		// The attacker's spec: well formed, unsigned, empty (it would purge).
		evil := mmsOK(t, "", "pack", writeMachines(t, t.TempDir()), "--unsigned").stdout
		env := []string{"HOME=/nonexistent", "XDG_CONFIG_HOME=/nonexistent", stateDirEnv + "=/nonexistent/state"}
		attacks := []struct {
			args []string
			want string
		}{
			{[]string{"status", "--server", url}, "Authorization Violation"},
			{[]string{"put", "--server", url, "--force", "--create"}, "Authorization Violation"},
			{[]string{"status", "--state-dir", state}, "permission denied\nlooked for NATS in this order: --server: not given; --context: not given; $NATS_CONTEXT: not set; the mms agent of --state-dir (" + filepath.Join(state, natsbox.LocalContextFile) + "): used\nonly the agent's user (and root) may read its credentials"},
			{[]string{"events", "--since", "1h", "--server", url}, "Authorization Violation"},
		}
		for _, a := range attacks {
			cmd := asNobody(t, exec.Command(bin, a.args...))
			cmd.Env = append(os.Environ(), env...)
			cmd.Stdin = strings.NewReader(evil)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), a.want) {
				t.Errorf("mms %s as nobody: %v\n%s\nwant a failure with %q", strings.Join(a.args, " "), err, out, a.want)
			}
		}
	})

	if after := storeView(t, js); after != before {
		t.Errorf("the agent's NATS changed during the attacks:\nbefore %s\nafter  %s", before, after)
	}
	agentProc.signal(t, syscall.SIGTERM)
	if code := agentProc.wait(t); code != 0 {
		t.Errorf("agent exit code = %d; stderr:\n%s", code, agentProc.stderr)
	}
}

// storeView describes what an attacker would change on the agent's
// server: the streams with their subjects and limits, and whether the
// spec exists.
func storeView(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	var b strings.Builder
	names := js.StreamNames(t.Context())
	for name := range names.Name() {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		fmt.Fprintf(&b, "%s%v max_bytes=%d; ", name, c.Subjects, c.MaxBytes)
	}
	if names.Err() != nil {
		t.Fatal(names.Err())
	}
	kv, err := js.KeyValue(t.Context(), "MACHINES")
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(t.Context(), "machines")
	fmt.Fprintf(&b, "spec: %v", err)
	return b.String()
}

// TestAgentRefusesUnsafeStateDir starts real agents on state directories
// another user could change: the agent exits 1 naming the path and the
// fix, and creates nothing. In the last case the other user planted a
// machine that would leave a mark if it ran: it does not run.
func TestAgentRefusesUnsafeStateDir(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the state directory and the message.
		setup func(t *testing.T, base string) (state, want string)
	}{
		{"world-writable parent", func(t *testing.T, base string) (string, string) {
			shared := filepath.Join(base, "shared")
			mkdirMode(t, shared, 0o777)
			state := filepath.Join(shared, "state")
			return state, "mms: refusing the state directory: " + state + ": its parent " + shared +
				" is writable by its group and others (drwxrwxrwx) without the sticky bit: they could replace what the agent runs; fix: chmod go-w " + shared + ", or use another directory\n"
		}},
		{"group-writable state directory", func(t *testing.T, base string) (string, string) {
			state := filepath.Join(base, "state")
			mkdirMode(t, state, 0o770)
			return state, "mms: refusing the state directory: " + state + " is writable by its group (drwxrwx---): they could replace what the agent runs; fix: chmod go-w " + state + ", or use another directory\n"
		}},
		{"group-writable credentials directory", func(t *testing.T, base string) (string, string) {
			state := filepath.Join(base, "state")
			creds := filepath.Join(state, "mms_manager", "credentials")
			mkdirMode(t, creds, 0o770)
			return state, "mms: refusing the credentials directory: " + creds + " is writable by its group (drwxrwx---)"
		}},
		{"machines directory owned by another user, with a planted machine", func(t *testing.T, base string) (string, string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to plant files as another user")
			}
			state := filepath.Join(base, "state")
			mkdirMode(t, state, 0o700)
			machines := filepath.Join(state, "machines")
			planted := filepath.Join(machines, "evil")
			mkdirMode(t, planted, 0o755)
			mark := filepath.Join(base, "pwned")
			writeFile(t, planted, "machine.yaml", strings.Replace(runnableMachineYAML("evil", "1.0.0"), "./check.sh", "touch "+mark, 1))
			for _, p := range []string{machines, planted, filepath.Join(planted, "machine.yaml")} {
				if err := os.Lchown(p, nobody, nobody); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the planted machine ran (stat %s: %v)", mark, err)
				}
			})
			return state, "mms: refusing the machines directory: " + machines + " is owned by uid 65534"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, want := tt.setup(t, t.TempDir())
			before := snapshotIfExists(t, state)
			p := startMMS(t, nil, agentArgs(t, state, "node")...)
			if code := p.wait(t); code != 1 {
				t.Errorf("agent exit code = %d, want 1; stderr:\n%s", code, p.stderr)
			}
			if got := p.stderr.String(); !strings.HasPrefix(got, want) {
				t.Errorf("agent stderr = %q, want it to start with %q", got, want)
			}
			if after := snapshotIfExists(t, state); !mapsEqual(before, after) {
				t.Errorf("the refused agent changed %s: before %v, after %v", state, before, after)
			}
		})
	}
}

func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// snapshotIfExists is treetest.Snapshot of dir, or nil when it does not
// exist.
func snapshotIfExists(t *testing.T, dir string) map[string]string {
	t.Helper()
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return treetest.Snapshot(t, dir)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestInsecureUnsignedNeedsAuthentication: without signatures, whoever can
// write the spec runs commands on the node, so --insecure-unsigned is
// refused on a NATS server that lets anyone in, and accepted on one that
// requires credentials.
func TestInsecureUnsignedNeedsAuthentication(t *testing.T) {
	open := natstest.RunJetStream(t)
	r := mmsBounded(t, "agent", "--insecure-unsigned", "--server", open.ClientURL(), "--state-dir", filepath.Join(t.TempDir(), "state"), "--timeout", "5s")
	want := "mms: --insecure-unsigned: the NATS server at " + open.ClientURL() + " does not require authentication, so anyone who can reach it could write the spec and run any command on this node"
	if r.code != 1 || !strings.HasPrefix(r.stderr[strings.LastIndex(r.stderr, "mms: "):], want) {
		t.Errorf("agent --insecure-unsigned on an open server = exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}

	dead, _ := natstest.DeadURL(t)
	r = mmsBounded(t, "agent", "--insecure-unsigned", "--server", dead, "--state-dir", filepath.Join(t.TempDir(), "state"), "--timeout", "500ms")
	if r.code != 1 || !strings.Contains(r.stderr, "mms: --insecure-unsigned: NATS did not answer within --timeout 500ms") {
		t.Errorf("agent --insecure-unsigned on an unreachable server = exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}

	opts := natstest.Options(t.TempDir())
	opts.Users = []*server.User{{Username: "node", Password: "node-secret"}}
	closed := natstest.Run(t, opts)
	js, err := jetstream.New(natstest.Connect(t, closed, nats.UserInfo("node", "node-secret")))
	if err != nil {
		t.Fatal(err)
	}
	createStatusBucket(t, js)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	ctxDir := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats", "context")
	mkdirMode(t, ctxDir, 0o700)
	if err := natsbox.WriteContextFile(filepath.Join(ctxDir, "edge.json"), natsbox.CLIContext{URL: closed.ClientURL(), User: "node", Password: "node-secret"}); err != nil {
		t.Fatal(err)
	}
	_, errOut, stop := runUntil(t, "agent", "--insecure-unsigned", "--context", "edge", "--state-dir", filepath.Join(t.TempDir(), "state"), "--identity", "edge1")
	waitFor(t, errOut, "agent started")
	statusDoc(t, js, "edge1", func(d *nodestatus.Document) error { return machineIn(d, testMachine, "done") })
	if code := stop(); code != 0 {
		t.Errorf("agent --insecure-unsigned on a server with authentication: exit %d; stderr:\n%s", code, errOut)
	}
}

// TestNATSContextForTheNATSCLI: the agent of the default state directory
// writes the nats CLI context "mms" (0600) with which a client reaches its
// server, and never replaces a context "mms" it did not write.
func TestNATSContextForTheNATSCLI(t *testing.T) {
	isolateNATSLookup(t)
	_, pub := newKeyPair(t, t.TempDir(), "ops")
	args := []string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--listen", "127.0.0.1:0", "--identity", "ctx1"}
	_, errOut, stop := runUntil(t, args...)
	waitFor(t, errOut, "agent started", "the nats CLI:    nats --context mms kv ls")
	path, err := natsbox.ContextPath("mms")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat %s = %v, %v; want mode 0600", path, st, err)
	}
	c, err := natsbox.Connect(t.Context(), natsbox.ConnectConfig{Context: "mms", FailFast: true})
	if err != nil {
		t.Fatalf("connect with the nats context mms: %v", err)
	}
	js, err := c.JetStream()
	if err == nil {
		_, err = js.KeyValue(t.Context(), "MACHINES")
	}
	c.Close()
	if err != nil {
		t.Errorf("the MACHINES bucket through the nats context mms: %v", err)
	}
	if natsCLI, err := exec.LookPath("nats"); err == nil {
		out, err := exec.Command(natsCLI, "--context", "mms", "kv", "ls").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "MACHINES") {
			t.Errorf("nats --context mms kv ls: %v\n%s", err, out)
		}
		// mms pack … | nats --context mms kv put MACHINES machines
		env := mmsOK(t, "", "pack", writeMachines(t, t.TempDir()), "--key-file", strings.TrimSuffix(pub, ".pub")+".key").stdout
		put := exec.Command(natsCLI, "--context", "mms", "kv", "put", "MACHINES", "machines")
		put.Stdin = strings.NewReader(env)
		if out, err := put.CombinedOutput(); err != nil {
			t.Errorf("mms pack … | nats --context mms kv put MACHINES machines: %v\n%s", err, out)
		} else if r := mmsOK(t, "", "status"); !strings.Contains(r.stdout, "v2 serial") {
			t.Errorf("mms status after nats kv put = %q, want the spec", r.stdout)
		}
	} else {
		t.Log("the nats CLI is not installed: 'nats --context mms kv ls' not run")
	}
	if code := stop(); code != 0 {
		t.Fatalf("agent exit code = %d; stderr:\n%s", code, errOut)
	}

	// A context "mms" of the operator's own is left alone.
	mine := `{"description":"prod","url":"nats://prod.example.net:4222"}`
	if err := os.WriteFile(path, []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, stop = runUntil(t, args...)
	waitFor(t, errOut, "agent started", "not replacing nats CLI context mms: it was not written by mms agent")
	if code := stop(); code != 0 {
		t.Fatalf("agent exit code = %d; stderr:\n%s", code, errOut)
	}
	if got := readFile(t, path); got != mine {
		t.Errorf("the operator's context mms = %q after an agent start, want it unchanged", got)
	}
}
