package archivewatcher_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	archivewatcher "github.com/mms-io/mms/manager/archivewatcher"
	_ "github.com/mms-io/mms/manager/machineswatcher" // (importing this package compiles the manager in)
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/packer"
	_ "github.com/mms-io/mms/watchers/kv"    // the compiled-in manager machine's watchers
	_ "github.com/mms-io/mms/watchers/timer" // the payload machine's watcher
)

// archiveEvent is an archive watcher state event.
type archiveEvent struct {
	info  agent.EventInfo
	state archivewatcher.State
}

// TestArchiveWatcherEndToEnd runs a user machine with an archive watcher
// (Choria's properties) in a real agent.Host against an HTTP server: the
// archive lands in target/creates, verified, and the machine moves on; a
// new version whose served bytes do not match its checksum fails with an
// event and leaves the target exactly as it was.
func TestArchiveWatcherEndToEnd(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The node's spec bucket (the compiled-in manager watches it). Creating
	// it also starts the connection's request multiplexer, which lives as
	// long as the connection, before the goroutine baseline.
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: mmsmanager.DefaultBucket}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	files := map[string][]byte{}
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		data, ok := files[r.URL.Path]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(repo.Close)
	serve := func(path string, data []byte) string {
		mu.Lock()
		defer mu.Unlock()
		files[path] = data
		return repo.URL + path
	}

	var evMu sync.Mutex
	var events []archiveEvent
	sub, err := nc.Subscribe(agent.WatcherStateSubject("archive"), func(msg *nats.Msg) {
		var ev event.Event
		var st archivewatcher.State
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Errorf("decode archive event: %v", err)
			return
		}
		info, err := agent.ParseEvent(ev)
		if err == nil {
			err = ev.DataAs(&st)
		}
		if err != nil {
			t.Errorf("decode archive event: %v", err)
			return
		}
		evMu.Lock()
		defer evMu.Unlock()
		events = append(events, archiveEvent{info: info, state: st})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	waitEvent := func(t *testing.T, outcome string) archiveEvent {
		t.Helper()
		var found archiveEvent
		natstest.Eventually(t, 30*time.Second, func() error {
			evMu.Lock()
			defer evMu.Unlock()
			for _, e := range events {
				if e.info.Outcome == outcome {
					found = e
					return nil
				}
			}
			return fmt.Errorf("no archive event with outcome %q among %d", outcome, len(events))
		})
		return found
	}

	v1 := payloadArchive(t, "1.0.0")
	v2 := payloadArchive(t, "2.0.0")
	evil := payloadArchive(t, "6.6.6")
	dir := t.TempDir()
	machines, target := filepath.Join(dir, "machines"), filepath.Join(dir, "target")
	deployer := filepath.Join(machines, "deployer")
	if err := os.MkdirAll(deployer, 0o755); err != nil {
		t.Fatal(err)
	}
	writeDeployer := func(t *testing.T, source string, info packer.ArchiveInfo) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(deployer, machine.File), []byte(deployerYAML(source, info, target)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeDeployer(t, serve("/payload-1.tar.gz", v1.data), v1.info)

	pub, _, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := manager.NewTrust(manager.TrustConfig{Keys: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	leaks := goleak.IgnoreCurrent()
	host, err := agent.NewHost(agent.HostConfig{
		MachinesDir: machines, DataDir: filepath.Join(dir, "data"), Identity: "node1",
		Publisher: agent.NATSPublisher{Conn: nc}, Conn: nc,
		Log:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Node: agent.WithSetting(agent.Node{StateDir: filepath.Join(dir, "state")}, manager.Settings{Trust: trust}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := host.Run(ctx); err != nil {
			t.Errorf("Host.Run() = %v", err)
		}
	})
	waitState := func(t *testing.T, version, state string) {
		t.Helper()
		natstest.Eventually(t, 30*time.Second, func() error {
			for _, st := range host.States() {
				if st.Name == "deployer" {
					if st.Version != version || st.State != state {
						return fmt.Errorf("deployer runs %s in %s, want %s in %s", st.Version, st.State, version, state)
					}
					return nil
				}
			}
			return fmt.Errorf("deployer not running")
		})
	}

	t.Run("installs and verifies", func(t *testing.T) {
		waitState(t, "1.0.0", "ready")
		ev := waitEvent(t, "success")
		if ev.state.PreviousOutcome != "downloaded" || ev.state.InstallOutcome != "installed" || ev.state.Checksum != v1.info.Checksum || ev.info.Machine != "deployer" {
			t.Errorf("archive event = %+v, want deployer's payload installed with checksum %s", ev, v1.info.Checksum)
		}
		if err := packer.VerifyTree(t.Context(), filepath.Join(target, "payload"), v1.info.VerifyChecksum); err != nil {
			t.Errorf("installed payload does not verify: %v", err)
		}
		if got := readFile(t, filepath.Join(target, "payload", "version.txt")); got != "1.0.0" {
			t.Errorf("payload version.txt = %q, want 1.0.0", got)
		}
	})

	t.Run("tampered archive changes nothing", func(t *testing.T) {
		before := treetest.Snapshot(t, target)
		// The server (a mirror, a proxy) serves other bytes than the
		// version the machine pins: a valid archive, but not that one.
		writeDeployer(t, serve("/payload-2.tar.gz", evil.data), v2.info)
		waitState(t, "2.0.0", "failed")
		ev := waitEvent(t, "error")
		wantErr := fmt.Sprintf("install %s: install %q: extract archive %q: sha256 mismatch: got %s, want %s",
			filepath.Join(target, "payload"), "payload", "payload", evil.info.Checksum, v2.info.Checksum)
		if ev.info.Error != wantErr || ev.state.Checksum != v2.info.Checksum || ev.state.PreviousOutcome != "error" {
			t.Errorf("archive error event = %+v, want error %q", ev, wantErr)
		}
		if entries, err := os.ReadDir(target); err != nil || len(entries) != 2 {
			t.Errorf("target holds %v (%v), want only payload and the watcher's state dir, no stage left", entries, err)
		}
		if diff := cmp.Diff(before, treetest.Snapshot(t, target)); diff != "" {
			t.Errorf("target changed (-before +after):\n%s", diff)
		}
	})

	cancel()
	wg.Wait()
	goleak.VerifyNone(t, leaks)
}

// testArchive is a payload archive.
type testArchive struct {
	info packer.ArchiveInfo
	data []byte
}

// payloadArchive builds the "payload" machine at version.
func payloadArchive(t *testing.T, version string) testArchive {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "payload")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := "name: payload\nversion: " + version + `
initial_state: idle
transitions:
  - name: stop
    from: [idle]
    destination: stopped
watchers:
  - name: wait
    type: timer
    state_match: [idle]
    fail_transition: stop
    properties:
      timer: 1h
`
	for name, content := range map[string]string{"machine.yaml": yaml, "version.txt": version} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	info, err := packer.CreateArchive(t.Context(), dir, "payload", &buf)
	if err != nil {
		t.Fatal(err)
	}
	return testArchive{info: info, data: buf.Bytes()}
}

// deployerYAML is a user machine whose archive watcher installs the
// archive at source into target; its version follows the archive's.
func deployerYAML(source string, info packer.ArchiveInfo, target string) string {
	version := strings.TrimSuffix(strings.TrimPrefix(source[strings.LastIndex(source, "/")+1:], "payload-"), ".tar.gz") + ".0.0"
	return fmt.Sprintf(`name: deployer
version: %s
initial_state: deploy
transitions:
  - name: deployed
    from: [deploy]
    destination: ready
  - name: broken
    from: [deploy]
    destination: failed
watchers:
  - name: payload
    type: archive
    state_match: [deploy]
    success_transition: deployed
    fail_transition: broken
    interval: 1m
    properties:
      source: %s
      checksum: %s
      verify: SHA256SUMS
      verify_checksum: %s
      creates: payload
      target: %s
      allow_http: true
`, version, source, info.Checksum, info.VerifyChecksum, target)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
