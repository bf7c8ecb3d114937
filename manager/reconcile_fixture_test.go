package manager

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// fixture is one node under test: a Reconciler over the fake installer and
// host, a signing key it trusts, a clock and the node's facts.
type fixture struct {
	t    testing.TB
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	inst *fakeInstaller
	host *fakeHost
	r    *Reconciler

	mu    sync.Mutex
	now   time.Time
	facts map[string]any
	label map[string]string // checksum → "name@version", for readable assertions
}

// t0 is the fixture's initial clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFixture(t testing.TB, configure func(*ReconcilerConfig)) *fixture {
	t.Helper()
	pub, priv, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	machines, state := filepath.Join(dir, "machines"), filepath.Join(dir, "state")
	for _, d := range []string{machines, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{
		t: t, priv: priv, pub: pub,
		inst: newFakeInstaller(machines), host: newFakeHost(machines),
		now: t0, facts: map[string]any{"role": "web"}, label: map[string]string{},
	}
	f.host.clock = f.clock
	cfg := ReconcilerConfig{
		Installer:    f.inst,
		Host:         f.host,
		StateDir:     state,
		Trust:        trustOf(TrustConfig{Keys: []ed25519.PublicKey{pub}}),
		PurgeUnknown: true,
		Identity:     "web1.example.net",
		Facts: func() map[string]any {
			f.mu.Lock()
			defer f.mu.Unlock()
			return maps.Clone(f.facts)
		},
		Path: "/nonexistent",
		Log:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:  f.clock,
	}
	if configure != nil {
		configure(&cfg)
	}
	if f.r, err = NewReconciler(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fixture) setFacts(facts map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.facts = facts
}

// entry returns a valid spec entry for version version of machine name.
func (f *fixture) entry(name, version, match string) spec.Machine {
	sum := func(s string) string {
		d := sha256.Sum256([]byte(s))
		return hex.EncodeToString(d[:])
	}
	m := spec.Machine{
		Name:           name,
		Source:         fmt.Sprintf("https://repo.example.net/%s-%s.tar.gz", name, version),
		Checksum:       sum(name + "@" + version),
		VerifyChecksum: sum("sums " + name + "@" + version),
		Match:          match,
	}
	f.label[m.Checksum] = name + "@" + version
	return m
}

// sealSpec seals s as a v2 envelope signed with the fixture's key.
func (f *fixture) sealSpec(s *spec.Spec, keys ...ed25519.PrivateKey) []byte {
	f.t.Helper()
	if len(keys) == 0 {
		keys = []ed25519.PrivateKey{f.priv}
	}
	env, err := packer.Seal(packer.FormatV2, s, keys...)
	if err != nil {
		f.t.Fatal(err)
	}
	return env
}

// seal seals a spec of serial and machines, issued now, with no expiry.
func (f *fixture) seal(serial uint64, ms ...spec.Machine) []byte {
	f.t.Helper()
	return f.sealSpec(&spec.Spec{Serial: serial, IssuedAt: f.clock(), Machines: orEmpty(ms)})
}

// orEmpty makes a nil machine list an empty one (a spec needs the list).
func orEmpty(ms []spec.Machine) []spec.Machine {
	if ms == nil {
		return []spec.Machine{}
	}
	return ms
}

// running returns what the host runs as sorted "name@version" labels.
func (f *fixture) running() []string {
	var out []string
	for name, sum := range f.host.snapshot() {
		l, ok := f.label[sum]
		if !ok {
			l = name + "@" + sum
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// outcomes returns a report's results as "name outcome" strings.
func outcomes(rep PassReport) []string {
	var out []string
	for _, m := range rep.Machines {
		out = append(out, m.Name+" "+string(m.Outcome))
	}
	return out
}
