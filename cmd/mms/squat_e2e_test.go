package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/syncbuf"
)

// The environment that makes this test binary a port squatter (see
// TestMain): the address to listen on, and "plain" (a NATS server that
// asks for a login, without TLS) or "tls" (one that offers TLS with a
// certificate of its own).
const (
	squatEnv     = "MMS_TEST_SQUAT"
	squatModeEnv = "MMS_TEST_SQUAT_MODE"
)

// squat listens on addr as a NATS server would, and prints every byte
// each client sends it (quoted, one line per connection) until it is
// killed. It returns an exit code.
func squat(addr, mode string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Println("squatting", addr)
	var cert tls.Certificate
	if mode == "tls" {
		if cert, err = squatterCert(); err != nil {
			fmt.Println("cert:", err)
			return 1
		}
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			info := map[string]any{"server_id": "NSQUATTER", "version": "2.15.2", "proto": 1, "max_payload": 1 << 20,
				"auth_required": true, "nonce": "cGxlYXNlLXNpZ24tbWU", "tls_required": mode == "tls"}
			b, _ := json.Marshal(info)
			if _, err := fmt.Fprintf(c, "INFO %s\r\n", b); err != nil {
				return
			}
			var rd io.Reader = c
			what := "plain"
			if mode == "tls" {
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				if err := tc.Handshake(); err != nil {
					fmt.Printf("conn: handshake failed: %v\n", err)
					return
				}
				rd, what = tc, "over tls"
			}
			got, _ := io.ReadAll(io.LimitReader(rd, 64<<10))
			fmt.Printf("conn: received %s: %q\n", what, got)
		}()
	}
}

// squatterCert is a self-signed certificate for 127.0.0.1, as any local
// user can make.
func squatterCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "squatter"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// startSquatter runs this test binary as the user nobody, squatting addr
// in mode, and returns what it prints.
func startSquatter(t *testing.T, addr, mode string) (out *syncbuf.Buffer, stop func()) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := asNobody(t, exec.Command(publicCopy(t, self)))
	cmd.Env = append(os.Environ(), squatEnv+"="+addr, squatModeEnv+"="+mode)
	out = &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	t.Cleanup(stop)
	waitFor(t, out, "squatting "+addr)
	return out, stop
}

// TestPortSquatterLearnsNothing is issue 23's second attack: while the
// agent is down, a local user (nobody) listens on its embedded server's
// port; root runs `mms status`, which finds the server through the state
// directory's nats-context.json. The command finds an impostor, says so and
// stops, and the squatter receives nothing it could log in with: no
// CONNECT at all, so no password or signature to replay against the agent
// once it is back on its port.
func TestPortSquatterLearnsNothing(t *testing.T) {
	bin := mmsBinary(t)
	state := filepath.Join(t.TempDir(), "state")
	args := agentArgs(t, state, "victim")
	agent := startMMS(t, nil, args...)
	agent.waitStderr(t, "agent started")
	login := loginOf(t, state)
	addr := strings.TrimPrefix(login.url, "nats://")
	status := func() (string, error) {
		out, err := exec.Command(bin, "status", "--state-dir", state, "--timeout", "5s").CombinedOutput()
		return string(out), err
	}
	if out, err := status(); err != nil {
		t.Fatalf("mms status with the agent up: %v\n%s", err, out)
	}
	agent.signal(t, syscall.SIGTERM)
	if code := agent.wait(t); code != 0 {
		t.Fatalf("agent exit code = %d; stderr:\n%s", code, agent.stderr)
	}

	want := regexp.MustCompile("^mms: " + regexp.QuoteMeta(login.url+" is not the embedded NATS server of the agent with state "+state+
		": it did not prove the TLS identity pinned in "+filepath.Join(state, natsbox.LocalContextFile)+
		", so another program may be listening on the agent's port while the agent is down; no credentials were sent to it. Check that the agent runs, and which program listens there (") + `.+\)\n`)
	var captured []string
	for _, mode := range []string{"plain", "tls"} {
		out, stop := startSquatter(t, addr, mode)
		got, err := status()
		stop()
		if err == nil || !want.MatchString(got) {
			t.Errorf("mms status with a %s squatter on the port: %v\n%s\nwant a refusal matching %s", mode, err, got, want)
		}
		t.Logf("%s squatter saw: %s", mode, out)
		captured = append(captured, out.String())
	}

	// What the squatter learned is worth nothing against the agent's own
	// server.
	agent = startMMS(t, nil, append(args, "--listen", addr)...)
	agent.waitStderr(t, "agent started")
	pass := regexp.MustCompile(`\\"pass\\":\\"([^\\]+)\\"`)
	for _, c := range captured {
		if strings.Contains(c, "CONNECT") {
			t.Errorf("the squatter received a CONNECT:\n%s", c)
		}
		for _, m := range pass.FindAllStringSubmatch(c, -1) {
			for _, tlsOpt := range []nats.Option{nil, nats.Secure(&tls.Config{InsecureSkipVerify: true})} {
				if nc, err := nats.Connect(login.url, nats.UserInfo("mms", m[1]), tlsOpt); err == nil {
					nc.Close()
					t.Errorf("the password the squatter learned logs in to the restarted agent's server")
				}
			}
		}
	}
	if out, err := status(); err != nil {
		t.Errorf("mms status once the agent is back: %v\n%s", err, out)
	}
}

// publicCopy copies the executable src into a directory every user can
// read, for processes run as another user.
func publicCopy(t *testing.T, src string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mms-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
