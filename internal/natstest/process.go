package natstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/jscluster"
)

// envServe names the configuration file a re-executed test binary serves
// (see Serve).
const envServe = "NATSTEST_SERVE_CONFIG"

// Serve runs a nats-server from the configuration file in
// $NATSTEST_SERVE_CONFIG and exits when it stops, if that variable is set:
// the test binary re-executed by StartProcess. Otherwise it returns at
// once. Call it first in the TestMain of a package that starts processes.
func Serve() {
	conf := os.Getenv(envServe)
	if conf == "" {
		return
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natstest: %v\n", err)
		os.Exit(2)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natstest: %v\n", err)
		os.Exit(2)
	}
	s.ConfigureLogger()
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "natstest: server not ready after 30s")
		os.Exit(2)
	}
	s.WaitForShutdown()
	os.Exit(0)
}

// Process is a nats-server in a process of its own, the test binary
// re-executed (its TestMain calls Serve), so a test can kill it with
// SIGKILL as a crash would and start it again on the same ports and
// store. It is stopped when the test ends.
type Process struct {
	// Name is the server's name; URL its client URL on loopback.
	Name, URL string
	conf, log string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// RunClusterProcesses starts n server processes that form a JetStream
// cluster (named "natstest", servers "n1"…) on loopback, each with its
// own store under t.TempDir, and returns once every one accepts clients
// (JetStream may still be electing its leaders: poll for what a test
// needs). Each server logs to server.log in its directory; the last lines of the
// logs are printed when the test fails.
func RunClusterProcesses(t testing.TB, n int) []*Process {
	t.Helper()
	var errs []error
	for range 3 { // a port picked free may be taken before it is bound
		ps, err := startClusterProcesses(t, n)
		if err == nil {
			return ps
		}
		errs = append(errs, err)
	}
	t.Fatalf("natstest: start %d server processes: %v", n, errors.Join(errs...))
	return nil
}

func startClusterProcesses(t testing.TB, n int) ([]*Process, error) {
	ports, err := jscluster.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i])
	}
	var ps []*Process
	for i := range n {
		dir := t.TempDir()
		name := fmt.Sprintf("n%d", i+1)
		conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
jetstream { store_dir: %q }
cluster {
  name: "natstest"
  listen: "127.0.0.1:%d"
  routes: [%s]
}
log_file: %q
logtime: true
`, name, ports[i], filepath.Join(dir, "jetstream"), ports[n+i], `"`+strings.Join(routes, `", "`)+`"`, filepath.Join(dir, "server.log"))
		p := &Process{Name: name, URL: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), conf: filepath.Join(dir, "server.conf"), log: filepath.Join(dir, "server.log")}
		if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	t.Cleanup(func() {
		for _, p := range ps {
			p.stop()
		}
		if t.Failed() {
			for _, p := range ps {
				t.Logf("natstest: the end of %s's log:\n%s", p.Name, p.logTail(30))
			}
		}
	})
	for _, p := range ps {
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	for _, p := range ps {
		if err := p.waitReady(30 * time.Second); err != nil {
			for _, p := range ps {
				p.stop()
			}
			return nil, err
		}
	}
	return ps, nil
}

// ProcessURLs returns the client URLs of ps as one comma-separated list.
func ProcessURLs(ps []*Process) string {
	urls := make([]string, len(ps))
	for i, p := range ps {
		urls[i] = p.URL
	}
	return strings.Join(urls, ",")
}

// start starts the process.
func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("natstest: %s already runs", p.Name)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServe+"="+p.conf)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("natstest: start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// waitReady waits until the server accepts a client.
func (p *Process) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("natstest: %s exited while starting:\n%s", p.Name, p.logTail(10))
		default:
		}
		nc, err := nats.Connect(p.URL, nats.Timeout(time.Second), nats.NoReconnect())
		if err == nil {
			nc.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: %s not ready after %v: %w", p.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills the server with SIGKILL, as a crash or a power cut would, and
// waits until the process is gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		t.Fatalf("natstest: kill %s: not running", p.Name)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("natstest: kill %s: %v", p.Name, err)
	}
	<-done
}

// Start starts the server again on its ports and store, and waits until it
// accepts clients.
func (p *Process) Start(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	if err := p.waitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// Running reports whether the process runs.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// stop ends the process (SIGTERM, then SIGKILL after 10s) if it runs.
func (p *Process) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// logTail returns the last n lines of the server's log.
func (p *Process) logTail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
