package machineswatcher

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

// fakeInstaller is an in-memory manager.MachineInstaller: it records what
// is installed and what it was asked, and downloads nothing.
type fakeInstaller struct {
	mu        sync.Mutex
	fail      map[string]error // Install of these names fails
	records   map[string]manager.Record
	verifies  []bool // the full flag of each Verify call
	recovers  int
	downloads int
}

func newFakeInstaller() *fakeInstaller {
	return &fakeInstaller{records: map[string]manager.Record{}, fail: map[string]error{}}
}

func (f *fakeInstaller) Install(_ context.Context, m spec.Machine, serial uint64) (manager.EntryOutcome, *machine.Definition, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[m.Name]; err != nil {
		return manager.EntryFailed, nil, err
	}
	rec, ok := f.records[m.Name]
	if ok && rec.Checksum == m.Checksum && rec.VerifyChecksum == m.VerifyChecksum {
		return manager.EntryUnchanged, nil, nil
	}
	f.downloads++
	f.records[m.Name] = manager.Record{Name: m.Name, Checksum: m.Checksum, VerifyChecksum: m.VerifyChecksum, Serial: serial, Phase: manager.PhaseInstalled}
	if ok {
		return manager.EntryUpdated, nil, nil
	}
	return manager.EntryInstalled, nil, nil
}

func (f *fakeInstaller) Rollback(context.Context, string) error {
	return fmt.Errorf("no previous version")
}

func (f *fakeInstaller) Purge(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.records[name]; !ok {
		return manager.ErrNotInstalled
	}
	delete(f.records, name)
	return nil
}

func (f *fakeInstaller) Installed() (map[string]manager.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.records), nil
}

func (f *fakeInstaller) Verify(_ context.Context, name string, full bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies = append(f.verifies, full)
	if _, ok := f.records[name]; !ok {
		return manager.ErrNotInstalled
	}
	return nil
}

func (f *fakeInstaller) Recover(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recovers++
	return nil
}

func (f *fakeInstaller) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.records))
}

// fakeHost is an in-memory watchers.Host.
type fakeHost struct {
	dir     string
	mu      sync.Mutex
	running map[string]bool
}

func (h *fakeHost) MachinesDir() string { return h.dir }

func (h *fakeHost) LoadMachine(_ context.Context, name string, _ watchers.Definition) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running[name] = true
	return nil
}

func (h *fakeHost) UnloadMachine(_ context.Context, name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.running, name)
	return nil
}

func (h *fakeHost) MachineState(name string) (watchers.MachineState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return watchers.MachineState{}, h.running[name]
}

// node is a machines watcher under test with its fakes and signing key.
type node struct {
	t        *testing.T
	priv     ed25519.PrivateKey
	pubHex   string
	inst     *fakeInstaller
	host     *fakeHost
	data     *watchertest.Store
	deps     watchers.Deps
	w        *Watcher
	settings manager.InstallSettings
}

// newNode builds a machines watcher from props (JSON; "KEY" is replaced
// by the node's trusted public key) the way the registry does, with a fake
// installer in place of the real one.
func newNode(t *testing.T, props string) *node {
	t.Helper()
	pub, priv, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, priv: priv, pubHex: packer.FormatPublicKey(pub), inst: newFakeInstaller(), data: watchertest.NewStore()}
	n.host = &fakeHost{dir: t.TempDir(), running: map[string]bool{}}
	n.deps = watchertest.Deps(t)
	n.deps.Host, n.deps.Data = n.host, n.data
	w, err := n.build(bytes.ReplaceAll([]byte(props), []byte("KEY"), []byte(n.pubHex)))
	if err != nil {
		t.Fatalf("build machines watcher from %s: %v", props, err)
	}
	n.w = w
	return n
}

// build decodes props strictly, validates and provisions, like
// watchers.Build followed by Provision.
func (n *node) build(props []byte) (*Watcher, error) {
	w := &Watcher{newInstaller: func(s manager.InstallSettings) (manager.MachineInstaller, error) {
		n.settings = s
		return n.inst, nil
	}}
	dec := json.NewDecoder(bytes.NewReader(props))
	dec.DisallowUnknownFields()
	if err := dec.Decode(w); err != nil {
		return nil, err
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if err := w.Provision(n.deps); err != nil {
		return nil, err
	}
	return w, nil
}

// envelope seals a v2 spec of serial with one entry per name.
func (n *node) envelope(serial uint64, names ...string) []byte {
	n.t.Helper()
	ms := []spec.Machine{}
	for _, name := range names {
		ms = append(ms, spec.Machine{
			Name: name, Source: "https://repo.example.net/" + name + ".tar.gz",
			Checksum: sum64("a" + name), VerifyChecksum: sum64("b" + name),
		})
	}
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: serial, IssuedAt: time.Now(), Machines: ms}, n.priv)
	if err != nil {
		n.t.Fatal(err)
	}
	return env
}

// sum64 returns 64 hex characters derived from s (a fake checksum).
func sum64(s string) string {
	return fmt.Sprintf("%064x", []byte(s))[:64]
}

// asMap decodes an envelope the way the kv watcher stores a JSON object.
func asMap(t *testing.T, env []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
