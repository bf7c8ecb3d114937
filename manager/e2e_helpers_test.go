package manager_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	_ "github.com/mms-io/mms/manager/archivewatcher"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	_ "github.com/mms-io/mms/watchers/exec"
	_ "github.com/mms-io/mms/watchers/kv"
)

// e2eWait bounds every wait of the end-to-end tests. Transitions the kv
// watcher fires are paced by the agent (up to 5 s apart when specs come
// in quick succession), so this is generous.
const e2eWait = 60 * time.Second

// e2eIdentity is the node's identity.
const e2eIdentity = "node1"

// e2eNode is one mms node run the way `mms agent` runs it: an agent.Host
// with the compiled-in manager machine, connected to a real JetStream
// server, reading its spec from the MACHINES KV bucket and downloading
// archives from an httptest server.
type e2eNode struct {
	tb     testing.TB
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	files  *archiveServer
	events *eventLog

	priv ed25519.PrivateKey
	pub  string // hex

	dir, machines, data, state string
	serial                     uint64

	host *agent.Host
	stop func()
}

// newE2ENode starts the server, the bucket, the archive server and the
// event subscription; the host is started with start.
func newE2ENode(tb testing.TB) *e2eNode {
	tb.Helper()
	srv := natstest.RunJetStream(tb)
	nc := natstest.Connect(tb, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.CreateKeyValue(tb.Context(), jetstream.KeyValueConfig{Bucket: mmsmanager.DefaultBucket})
	if err != nil {
		tb.Fatal(err)
	}
	pub, priv, err := packer.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	n := &e2eNode{
		tb: tb, nc: nc, js: js, kv: kv,
		files: newArchiveServer(tb),
		priv:  priv, pub: packer.FormatPublicKey(pub),
		dir:      dir,
		machines: filepath.Join(dir, "machines"),
		data:     filepath.Join(dir, "data"),
		state:    filepath.Join(dir, "state"),
		serial:   100,
	}
	n.events = subscribeEvents(tb, natstest.Connect(tb, srv))
	return n
}

// start runs a new host on the node's directories until stop is called or
// the test ends.
func (n *e2eNode) start() {
	n.tb.Helper()
	pub, err := packer.ParsePublicKey(n.pub)
	if err != nil {
		n.tb.Fatal(err)
	}
	trust, err := manager.NewTrust(manager.TrustConfig{Keys: []ed25519.PublicKey{pub}})
	if err != nil {
		n.tb.Fatal(err)
	}
	h, err := agent.NewHost(agent.HostConfig{
		MachinesDir: n.machines,
		DataDir:     n.data,
		Identity:    e2eIdentity,
		Publisher:   agent.NATSPublisher{Conn: n.nc},
		Log:         slog.New(slog.NewTextHandler(n.tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Conn:        n.nc,
		Node: agent.WithSetting(agent.Node{StateDir: n.state}, manager.Settings{
			Trust:     trust,
			AllowHTTP: true,
			Bucket:    mmsmanager.DefaultBucket,
			Key:       mmsmanager.DefaultKey,
		}),
	})
	if err != nil {
		n.tb.Fatalf("NewHost() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := h.Run(ctx); err != nil {
			n.tb.Errorf("Host.Run() = %v", err)
		}
	})
	var once sync.Once
	n.host = h
	n.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
	n.tb.Cleanup(n.stop)
}

// managerState returns the manager machine's state directory.
func (n *e2eNode) managerState() string { return filepath.Join(n.state, mmsmanager.MachineName) }

// seal signs a v2 spec of the next serial with the node's trusted key.
func (n *e2eNode) seal(t testing.TB, ms ...spec.Machine) ([]byte, uint64) {
	t.Helper()
	n.serial++
	return sealWith(t, &spec.Spec{Serial: n.serial, IssuedAt: time.Now().UTC(), Machines: orNone(ms)}, n.priv), n.serial
}

// sealWith signs s with keys.
func sealWith(t testing.TB, s *spec.Spec, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	env, err := packer.Seal(packer.FormatV2, s, keys...)
	if err != nil {
		t.Fatalf("Seal() = %v", err)
	}
	return env
}

// orNone keeps an empty spec's machines a list, never null.
func orNone(ms []spec.Machine) []spec.Machine {
	if ms == nil {
		return []spec.Machine{}
	}
	return ms
}

// put writes value to the spec key.
func (n *e2eNode) put(t testing.TB, value []byte) {
	t.Helper()
	if _, err := n.kv.Put(t.Context(), mmsmanager.DefaultKey, value); err != nil {
		t.Fatalf("kv put: %v", err)
	}
}

// apply seals ms with the next serial, puts it and waits for the machines
// watcher's event about that serial; it returns the event's state.
func (n *e2eNode) apply(t testing.TB, ms ...spec.Machine) (machinesEvent, uint64) {
	t.Helper()
	env, serial := n.seal(t, ms...)
	mark := n.events.mark()
	n.put(t, env)
	ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool { return e.State.Serial == serial })
	return ev, serial
}

// status returns the host's status of machine name, if it runs.
func (n *e2eNode) status(name string) (agent.MachineStatus, bool) {
	for _, st := range n.host.States() {
		if st.Name == name {
			return st, true
		}
	}
	return agent.MachineStatus{}, false
}

// waitRunning waits until machine name runs version in state.
func (n *e2eNode) waitRunning(t testing.TB, name, version, state string) {
	t.Helper()
	natstest.Eventually(t, e2eWait, func() error {
		st, ok := n.status(name)
		switch {
		case !ok:
			return fmt.Errorf("machine %s is not running; host runs %v", name, names(n.host.States()))
		case st.Version != version || st.State != state:
			return fmt.Errorf("machine %s runs version %s in %s, want version %s in %s", name, st.Version, st.State, version, state)
		}
		return nil
	})
}

// waitGone waits until the host no longer runs machine name.
func (n *e2eNode) waitGone(t testing.TB, name string) {
	t.Helper()
	natstest.Eventually(t, e2eWait, func() error {
		if _, ok := n.status(name); ok {
			return fmt.Errorf("machine %s still runs", name)
		}
		return nil
	})
}

func names(sts []agent.MachineStatus) []string {
	out := make([]string, 0, len(sts))
	for _, st := range sts {
		out = append(out, st.Name+"@"+st.Version+"/"+st.State)
	}
	return out
}

// machineData reads the data file the host keeps for machine name.
func (n *e2eNode) machineData(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.data, name, agent.DataFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s data: %v", name, err)
	}
	return m
}
