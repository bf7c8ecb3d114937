package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// fakeInstaller is a small in-test MachineInstaller. It writes a real
// machine directory (machine.yaml whose version is the entry's checksum,
// plus a SHA256SUMS) so verification, hand deletion and tampering are real
// file-system operations, but it downloads nothing: "downloads" counts the
// installs that would have fetched an archive.
type fakeInstaller struct {
	dir string

	mu         sync.Mutex
	records    map[string]Record
	sums       map[string]string // name → sha256 of the SHA256SUMS written
	prev       map[string]Record // the version kept for rollback
	downloads  int
	purges     []string
	installErr map[string]error // by name
	block      map[string]chan struct{}
	trustTree  bool // Install skips checking the tree (a broken installer)
	listings   int  // calls of Installed
}

var _ MachineInstaller = (*fakeInstaller)(nil)

func newFakeInstaller(dir string) *fakeInstaller {
	return &fakeInstaller{
		dir: dir, records: map[string]Record{}, sums: map[string]string{}, prev: map[string]Record{},
		installErr: map[string]error{}, block: map[string]chan struct{}{},
	}
}

func (f *fakeInstaller) Install(ctx context.Context, m spec.Machine, serial uint64) (EntryOutcome, *machine.Definition, error) {
	f.mu.Lock()
	wait := f.block[m.Name]
	f.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.records[m.Name]
	if ok && rec.Checksum == m.Checksum && rec.VerifyChecksum == m.VerifyChecksum &&
		(f.trustTree || packer.VerifyTree(ctx, filepath.Join(f.dir, m.Name), f.sums[m.Name]) == nil) {
		return EntryUnchanged, nil, nil
	}
	f.downloads++
	if err := f.installErr[m.Name]; err != nil {
		return "", nil, err
	}
	out := EntryInstalled
	if ok {
		out = EntryUpdated
		f.prev[m.Name] = rec
	}
	next := Record{Name: m.Name, Source: m.Source, Checksum: m.Checksum, VerifyChecksum: m.VerifyChecksum, Serial: serial, Phase: PhaseInstalled}
	if err := f.writeTree(next); err != nil {
		return "", nil, err
	}
	f.records[m.Name] = next
	return out, nil, nil
}

// writeTree replaces the machine directory with one for rec.
func (f *fakeInstaller) writeTree(rec Record) error {
	dir := filepath.Join(f.dir, rec.Name)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	def := fmt.Appendf(nil, "name: %s\nversion: %q\ninitial_state: RUN\ntransitions:\n  - {name: stop, from: [RUN], destination: STOP}\nwatchers:\n  - {name: tick, type: timer, properties: {timer: 1h}}\n", rec.Name, rec.Checksum)
	if err := os.WriteFile(filepath.Join(dir, packer.MachineFile), def, 0o644); err != nil {
		return err
	}
	d := sha256.Sum256(def)
	sums, err := packer.Sums{packer.MachineFile: hex.EncodeToString(d[:])}.Bytes()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, packer.SumsFile), sums, 0o644); err != nil {
		return err
	}
	s := sha256.Sum256(sums)
	f.sums[rec.Name] = hex.EncodeToString(s[:])
	return nil
}

func (f *fakeInstaller) Rollback(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev, ok := f.prev[name]
	if !ok {
		return fmt.Errorf("roll back %q: no previous version", name)
	}
	if err := f.writeTree(prev); err != nil {
		return err
	}
	f.records[name] = prev
	delete(f.prev, name)
	return nil
}

func (f *fakeInstaller) Purge(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.records[name]; !ok {
		return fmt.Errorf("purge %q: %w", name, ErrNotInstalled)
	}
	if err := os.RemoveAll(filepath.Join(f.dir, name)); err != nil {
		return err
	}
	delete(f.records, name)
	delete(f.prev, name)
	delete(f.sums, name)
	f.purges = append(f.purges, name)
	return nil
}

func (f *fakeInstaller) Installed() (map[string]Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listings++
	out := maps.Clone(f.records)
	for name, p := range f.prev {
		if rec, ok := out[name]; ok {
			rec.Previous = &PreviousVersion{Checksum: p.Checksum, VerifyChecksum: p.VerifyChecksum, Serial: p.Serial}
			out[name] = rec
		}
	}
	return out, nil
}

func (f *fakeInstaller) Verify(ctx context.Context, name string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.records[name]; !ok {
		return fmt.Errorf("verify %q: %w", name, ErrNotInstalled)
	}
	if err := packer.VerifyTree(ctx, filepath.Join(f.dir, name), f.sums[name]); err != nil {
		return fmt.Errorf("verify %q: %w: %w", name, ErrTampered, err)
	}
	return nil
}

// names returns the names with an install record, sorted.
func (f *fakeInstaller) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.records))
}

// fakeHost is a small in-test watchers.Host: LoadMachine parses the
// machine.yaml on disk and "runs" its version (the checksum the fake
// installer wrote), unless that version is set to fail; like the agent's
// host, a failed load leaves the running version running.
type fakeHost struct {
	dir string

	mu       sync.Mutex
	running  map[string]string // name → version
	failLoad map[string]error  // by version
	loads    int
	clock    func() time.Time                 // when a load starts a machine; nil: zero
	states   map[string]watchers.MachineState // what runs: started at its load, states it entered
}

var _ watchers.Host = (*fakeHost)(nil)

func newFakeHost(dir string) *fakeHost {
	return &fakeHost{dir: dir, running: map[string]string{}, failLoad: map[string]error{}}
}

func (h *fakeHost) MachinesDir() string { return h.dir }

func (h *fakeHost) LoadMachine(_ context.Context, name string, _ watchers.Definition) error {
	data, err := os.ReadFile(filepath.Join(h.dir, name, packer.MachineFile))
	if err != nil {
		return fmt.Errorf("load machine %q: %w", name, err)
	}
	def, err := machine.Parse(data)
	if err != nil {
		return fmt.Errorf("load machine %q: %w", name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loads++
	if err := h.failLoad[def.Version]; err != nil {
		return fmt.Errorf("load machine %q: %w", name, err)
	}
	if h.running[name] == def.Version {
		return nil // like the agent's host: an unchanged machine is left running
	}
	h.running[name] = def.Version
	if h.clock != nil {
		if h.states == nil {
			h.states = map[string]watchers.MachineState{}
		}
		now := h.clock()
		h.states[name] = watchers.MachineState{Version: def.Version, State: def.InitialState, Started: now, Entered: map[string]time.Time{def.InitialState: now}}
	}
	return nil
}

// enter makes the running machine name enter state at.
func (h *fakeHost) enter(name, state string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.states[name]
	st.State = state
	if _, ok := st.Entered[state]; !ok {
		st.Entered[state] = at
	}
	h.states[name] = st
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
	v, ok := h.running[name]
	if !ok {
		return watchers.MachineState{}, false
	}
	st := h.states[name]
	st.Version = v
	return st, true
}

// snapshot returns what runs, by name.
func (h *fakeHost) snapshot() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.running)
}

// errLoad is the load error tests inject.
var errLoad = errors.New("watcher type \"nope\" is not compiled in")
