package machineswatcher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager/machineswatcher"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	_ "github.com/mms-io/mms/watchers/kv" // the shipped manager's kv watchers
)

// TestShippedManagerNamesTheFix runs Choria's shipped machines manager
// (machine/testdata/choria/shipped-manager.yaml) in a real host on NATS: a
// v1 spec it refuses and an http:// entry it refuses are both explained
// with the property that accepts them (allow_legacy_spec: true,
// allow_http: true), in the machines watcher's event and in the log; and
// an operator's transition request takes it to MAINTENANCE and back, as
// Choria's machine_transition does.
func TestShippedManagerNamesTheFix(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	entry := spec.Machine{
		Name: "facts", Source: "https://repo.example.net/facts.tar.gz",
		Checksum: strings.Repeat("a", 64), VerifyChecksum: strings.Repeat("b", 64),
	}
	v1, err := packer.Seal(packer.FormatV1, &spec.Spec{Machines: []spec.Machine{entry}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "spec", v1); err != nil {
		t.Fatal(err)
	}

	yaml, err := os.ReadFile(filepath.Join("..", "..", "machine", "testdata", "choria", "shipped-manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml = bytes.Replace(yaml, []byte("64031219d4922eed63a5f567303e98607c632139c01bc9fa4ca2514c2d9d30da"), []byte(packer.FormatPublicKey(pub)), 1)
	dir := t.TempDir()
	machines := filepath.Join(dir, "machines")
	if err := os.MkdirAll(filepath.Join(machines, "machine_manager"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(machines, "machine_manager", machine.File), yaml, 0o644); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var reasons []string
	sub, err := nc.Subscribe(agent.WatcherStateSubject("machines"), func(msg *nats.Msg) {
		var ev event.Event
		var st machineswatcher.State
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Errorf("decode machines event: %v", err)
			return
		}
		if err := ev.DataAs(&st); err != nil {
			t.Errorf("decode machines event: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		reasons = append(reasons, st.Reason)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	var log syncbuf.Buffer
	host, err := agent.NewHost(agent.HostConfig{
		MachinesDir: machines, DataDir: filepath.Join(dir, "data"), Identity: "node1",
		Publisher: agent.NATSPublisher{Conn: nc}, Conn: nc,
		Log: slog.New(slog.NewTextHandler(&log, nil)),
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
	wg.Go(func() {
		if err := host.ServeTransitions(ctx); err != nil {
			t.Errorf("Host.ServeTransitions() = %v", err)
		}
	})
	defer wg.Wait()
	defer cancel()

	// waitFix waits for an event whose reason says fix and a log line
	// that does.
	waitFix := func(t *testing.T, what, fix string) {
		t.Helper()
		natstest.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			found := false
			for _, r := range reasons {
				found = found || strings.Contains(r, fix)
			}
			switch {
			case !found:
				return fmt.Errorf("no machines event names %q for %s; reasons: %q", fix, what, reasons)
			case !strings.Contains(log.String(), fix):
				return fmt.Errorf("the log does not name %q for %s:\n%s", fix, what, log.String())
			}
			return nil
		})
	}

	t.Run("v1 spec", func(t *testing.T) {
		waitFix(t, "a v1 spec", "v1 spec refused: v1 envelopes have no serial or expiry, so no replay protection, and v1 is not allowed; to accept v1 specs anyway, set allow_legacy_spec: true")
	})

	t.Run("http source", func(t *testing.T) {
		entry.Source = "http://repo.example.net/facts.tar.gz"
		v2, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 1, IssuedAt: time.Now().Add(-time.Minute), Machines: []spec.Machine{entry}}, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), "spec", v2); err != nil {
			t.Fatal(err)
		}
		// The manager polls the key every 5m; a reload reads it at once.
		if err := host.UnloadMachine(t.Context(), "machine_manager"); err != nil {
			t.Fatal(err)
		}
		if err := host.LoadMachine(t.Context(), "machine_manager", nil); err != nil {
			t.Fatal(err)
		}
		waitFix(t, "an http:// source", `source: plain http:// is not allowed; use https:// or nats://, or allow http with allow_http: true (the checksums still pin the bytes)`)
	})

	t.Run("maintenance", func(t *testing.T) {
		for _, step := range []struct{ transition, from, to string }{
			{"enter_maintenance", "MANAGE", "MAINTENANCE"},
			{"resume", "MAINTENANCE", "MANAGE"},
		} {
			req := agent.TransitionRequest{Identity: "^node1$", Machine: "machine_manager", Transition: step.transition}
			got, err := agent.RequestTransition(t.Context(), nc, req, 10*time.Second, []string{"node1"})
			want := agent.TransitionReply{Identity: "node1", Machine: "machine_manager", Transition: step.transition, Outcome: agent.Transitioned, From: step.from, To: step.to}
			if err != nil || len(got) != 1 || got[0] != want {
				t.Errorf("transition %s = %+v, %v; want %+v", step.transition, got, err, want)
			}
		}
	})
}
