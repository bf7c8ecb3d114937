package manager

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

func TestInstallLifecycle(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	ctx := t.Context()
	v1 := buildArchive(t, "web", "1.0.0", map[string]string{"run.sh": "echo one\n"})
	v2 := buildArchive(t, "web", "2.0.0", map[string]string{"run.sh": "echo two\n", "lib/x.conf": "x=1\n"})
	e1 := v1.entry(srv.put("/web-1.tgz", v1.data))
	e2 := v2.entry(srv.put("/web-2.tgz", v2.data))
	live := filepath.Join(env.machines, "web")
	prev := filepath.Join(env.machines, ".prev-web")

	out, def, err := env.inst.Install(ctx, e1, 10)
	if err != nil || out != EntryInstalled {
		t.Fatalf("Install(v1) = %q, %v, want %q", out, err, EntryInstalled)
	}
	// The definition it checked is handed to the host, which runs it
	// without parsing machine.yaml again when the digests agree.
	if def == nil || def.Version != "1.0.0" || def.Digest() != sha256.Sum256([]byte(readFile(t, filepath.Join(live, packer.MachineFile)))) {
		t.Errorf("Install(v1) definition = %+v, want the installed machine.yaml's", def)
	}
	if got := readFile(t, filepath.Join(live, "run.sh")); got != "echo one\n" {
		t.Errorf("run.sh = %q, want v1", got)
	}
	recs, err := env.inst.Installed()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Record{"web": {Name: "web", Source: e1.Source, Checksum: v1.info.Checksum,
		VerifyChecksum: v1.info.VerifyChecksum, Serial: 10, Phase: PhaseInstalled}}
	if diff := cmp.Diff(want, recs, cmpopts.IgnoreFields(Record{}, "InstalledAt")); diff != "" {
		t.Errorf("Installed() after v1 (-want +got):\n%s", diff)
	}
	if recs["web"].InstalledAt.IsZero() {
		t.Errorf("Installed()[web].InstalledAt is zero")
	}

	// Same checksums again: no download at all.
	before := srv.requests.Load()
	out, _, err = env.inst.Install(ctx, e1, 11)
	if err != nil || out != EntryUnchanged {
		t.Fatalf("Install(v1 again) = %q, %v, want %q", out, err, EntryUnchanged)
	}
	if got := srv.requests.Load() - before; got != 0 {
		t.Errorf("Install(v1 again) made %d requests, want 0", got)
	}
	// A fresh installer (agent restart) hashes the tree once, still without downloading.
	out, _, err = env.reopen(t).Install(ctx, e1, 11)
	if err != nil || out != EntryUnchanged || srv.requests.Load() != before {
		t.Fatalf("Install(v1) after restart = %q, %v with %d requests, want %q and none", out, err, srv.requests.Load()-before, EntryUnchanged)
	}

	out, _, err = env.inst.Install(ctx, e2, 12)
	if err != nil || out != EntryUpdated {
		t.Fatalf("Install(v2) = %q, %v, want %q", out, err, EntryUpdated)
	}
	if got := readFile(t, filepath.Join(live, "run.sh")); got != "echo two\n" {
		t.Errorf("run.sh = %q, want v2", got)
	}
	if got := readFile(t, filepath.Join(prev, "run.sh")); got != "echo one\n" {
		t.Errorf(".prev-web/run.sh = %q, want v1", got)
	}
	recs, _ = env.inst.Installed()
	wantPrev := &PreviousVersion{Checksum: v1.info.Checksum, VerifyChecksum: v1.info.VerifyChecksum, Serial: 10}
	if diff := cmp.Diff(wantPrev, recs["web"].Previous); diff != "" || recs["web"].Checksum != v2.info.Checksum {
		t.Errorf("Installed()[web] = %+v, want v2 with previous v1 (-want +got):\n%s", recs["web"], diff)
	}
	assertNoLeftovers(t, env)

	if err := env.inst.Rollback(ctx, "web"); err != nil {
		t.Fatalf("Rollback(web) = %v", err)
	}
	if got := readFile(t, filepath.Join(live, "run.sh")); got != "echo one\n" {
		t.Errorf("run.sh after rollback = %q, want v1", got)
	}
	if _, err := os.Stat(prev); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat(.prev-web) after rollback = %v, want not exist", err)
	}
	recs, _ = env.inst.Installed()
	if r := recs["web"]; r.Checksum != v1.info.Checksum || r.Serial != 10 || r.Previous != nil || r.Source != e1.Source {
		t.Errorf("Installed()[web] after rollback = %+v, want v1 serial 10, no previous", r)
	}
	if err := env.inst.Rollback(ctx, "web"); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("second Rollback(web) = %v, want ErrNoPrevious", err)
	}
	assertNoLeftovers(t, env)

	if err := env.inst.Purge(ctx, "web"); err != nil {
		t.Fatalf("Purge(web) = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(env.machines, "web")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat(web) once Purge returned = %v, want it gone at once", err)
	}
	waitCleanup(t, env.inst)
	if snap := treetest.Snapshot(t, env.machines); len(snap) != 1 {
		t.Errorf("machines dir after purge = %v, want empty", snap)
	}
	if recs, _ := env.inst.Installed(); len(recs) != 0 {
		t.Errorf("Installed() after purge = %v, want none", recs)
	}
	if err := env.inst.Purge(ctx, "web"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("second Purge(web) = %v, want ErrNotInstalled", err)
	}
}

func TestInstallRefusals(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	ctx := t.Context()

	foreign := filepath.Join(env.machines, "hand")
	writeTestFile(t, filepath.Join(foreign, "machine.yaml"), testMachineYAML("hand", "1"))
	a := buildArchive(t, "hand", "2", nil)
	before := treetest.Snapshot(t, env.machines)
	_, _, err := env.inst.Install(ctx, a.entry(srv.put("/hand.tgz", a.data)), 1)
	if err == nil || !strings.Contains(err.Error(), "was not installed by this agent") {
		t.Errorf("Install over a foreign dir = %v, want refusal", err)
	}
	treetest.AssertSame(t, env.machines, before)
	if srv.requests.Load() != 0 {
		t.Errorf("Install over a foreign dir downloaded %d times", srv.requests.Load())
	}

	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"purge", func() error { return env.inst.Purge(ctx, "hand") }},
		{"rollback", func() error { return env.inst.Rollback(ctx, "hand") }},
		{"verify", func() error { return env.inst.Verify(ctx, "hand", true) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrNotInstalled) {
				t.Errorf("%s(hand) = %v, want ErrNotInstalled", tt.name, err)
			}
			treetest.AssertSame(t, env.machines, before)
		})
	}
}

func TestInstallRepairsTamperedTree(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	ctx := t.Context()
	v1 := buildArchive(t, "web", "1", map[string]string{"a": "1"})
	v2 := buildArchive(t, "web", "2", map[string]string{"a": "2"})
	e1, e2 := v1.entry(srv.put("/1", v1.data)), v2.entry(srv.put("/2", v2.data))
	for _, e := range []struct {
		m   spec.Machine
		out EntryOutcome
	}{{e1, EntryInstalled}, {e2, EntryUpdated}} {
		if out, _, err := env.inst.Install(ctx, e.m, 1); err != nil || out != e.out {
			t.Fatalf("Install = %q, %v, want %q", out, err, e.out)
		}
	}
	good := treetest.Snapshot(t, env.machines)
	writeTestFile(t, filepath.Join(env.machines, "web", "a"), "evil")

	out, _, err := env.inst.Install(ctx, e2, 1)
	if err != nil || out != EntryUpdated {
		t.Fatalf("Install(v2) over a tampered v2 = %q, %v, want %q", out, err, EntryUpdated)
	}
	// The repaired tree is v2 again and .prev still holds v1, not the tampered copy.
	waitCleanup(t, env.inst)
	treetest.AssertSame(t, env.machines, good)
	if rec, _ := env.inst.Installed(); rec["web"].Previous == nil || rec["web"].Previous.Checksum != v1.info.Checksum {
		t.Errorf("previous after repair = %+v, want v1", rec["web"].Previous)
	}
	assertNoLeftovers(t, env)
}

func TestInstallFallbackRenames(t *testing.T) {
	srv := newFileServer(t, false)
	env := newTestEnv(t, srv.Server, FetchConfig{AllowHTTP: true})
	env.inst.noExchange = true
	ctx := t.Context()
	v1 := buildArchive(t, "db", "1", map[string]string{"x": "1"})
	v2 := buildArchive(t, "db", "2", map[string]string{"x": "2"})
	v3 := buildArchive(t, "db", "3", map[string]string{"x": "3"})
	for n, a := range []testArchive{v1, v2, v3} {
		if _, _, err := env.inst.Install(ctx, a.entry(srv.put("/"+a.info.Checksum, a.data)), uint64(n+1)); err != nil {
			t.Fatalf("Install(v%d) = %v", n+1, err)
		}
	}
	if got := readFile(t, filepath.Join(env.machines, "db", "x")); got != "3" {
		t.Errorf("live x = %q, want 3", got)
	}
	if got := readFile(t, filepath.Join(env.machines, ".prev-db", "x")); got != "2" {
		t.Errorf(".prev x = %q, want 2", got)
	}
	assertNoLeftovers(t, env)
}

func TestInstallGateOnlyForDownloads(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	var entered, released atomic.Int64
	env.inst.gate = func(ctx context.Context, governor string) (func(), error) {
		if governor != "slow" {
			t.Errorf("gate(%q), want slow", governor)
		}
		entered.Add(1)
		return func() { released.Add(1) }, nil
	}
	a := buildArchive(t, "web", "1", nil)
	e := a.entry(srv.put("/w", a.data))
	e.Governor = "slow"
	for range 2 {
		if _, _, err := env.inst.Install(t.Context(), e, 1); err != nil {
			t.Fatal(err)
		}
	}
	if entered.Load() != 1 || released.Load() != 1 {
		t.Errorf("gate entered %d and released %d times, want 1 and 1 (the second install needs no download)",
			entered.Load(), released.Load())
	}

	env.inst.gate = func(ctx context.Context, governor string) (func(), error) {
		return nil, errors.New("governor full")
	}
	b := buildArchive(t, "web", "2", nil)
	e = b.entry(srv.put("/w2", b.data))
	e.Governor = "slow"
	before := treetest.Snapshot(t, env.machines)
	if _, _, err := env.inst.Install(t.Context(), e, 2); err == nil || !strings.Contains(err.Error(), `enter governor "slow": governor full`) {
		t.Errorf("Install with a full governor = %v", err)
	}
	treetest.AssertSame(t, env.machines, before)
	assertNoLeftovers(t, env)
}

func TestInstalledDefinitionLoads(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	a := buildArchive(t, "facts", "1.2.3", nil)
	if _, _, err := env.inst.Install(t.Context(), a.entry(srv.put("/f", a.data)), 1); err != nil {
		t.Fatal(err)
	}
	def, err := machine.Load(filepath.Join(env.machines, "facts"))
	if err != nil || def.Name != "facts" || def.Version != "1.2.3" {
		t.Errorf("LoadDefinition(installed facts) = %+v, %v", def, err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestInstallUndoesFailedSwap makes the swap fail after the new tree went
// live (.prev-web is a file, so it cannot be replaced): every step is
// undone and M is exactly as before.
func TestInstallUndoesFailedSwap(t *testing.T) {
	for _, exchange := range []bool{true, false} {
		t.Run(map[bool]string{true: "exchange", false: "two renames"}[exchange], func(t *testing.T) {
			srv := newFileServer(t, true)
			env := newTestEnv(t, srv.Server, FetchConfig{})
			env.inst.noExchange = !exchange
			v1 := buildArchive(t, "web", "1", map[string]string{"a": "1"})
			v2 := buildArchive(t, "web", "2", map[string]string{"a": "2"})
			if _, _, err := env.inst.Install(t.Context(), v1.entry(srv.put("/1", v1.data)), 1); err != nil {
				t.Fatal(err)
			}
			writeTestFile(t, filepath.Join(env.machines, ".prev-web"), "in the way")
			before := treetest.Snapshot(t, env.machines)
			recsBefore, _ := env.inst.Installed()
			_, _, err := env.inst.Install(t.Context(), v2.entry(srv.put("/2", v2.data)), 2)
			if err == nil || !strings.Contains(err.Error(), ".prev-web is not a directory") {
				t.Fatalf("Install with .prev-web in the way = %v", err)
			}
			treetest.AssertSame(t, env.machines, before)
			assertNoLeftovers(t, env)
			if recsAfter, _ := env.inst.Installed(); !cmp.Equal(recsBefore, recsAfter) {
				t.Errorf("records changed: %v → %v", recsBefore, recsAfter)
			}
		})
	}
}

func TestRollbackRefusesTamperedPrevious(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	for n, v := range []string{"1", "2"} {
		a := buildArchive(t, "web", v, map[string]string{"a": v})
		if _, _, err := env.inst.Install(t.Context(), a.entry(srv.put("/"+v, a.data)), uint64(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, filepath.Join(env.machines, ".prev-web", "a"), "evil")
	before := treetest.Snapshot(t, env.machines)
	err := env.inst.Rollback(t.Context(), "web")
	if err == nil || !strings.Contains(err.Error(), "previous version no longer verifies") {
		t.Fatalf("Rollback to a tampered previous version = %v", err)
	}
	treetest.AssertSame(t, env.machines, before)
	assertNoLeftovers(t, env)
}

// TestInstallChecksVerifyChecksum: verify_checksum pins the archive's
// SHA256SUMS on its own. An entry whose archive checksum is right but whose
// verify_checksum is not SHA256SUMS's digest installs nothing; an installed
// version whose entry changes only its verify_checksum is checked again,
// not taken as unchanged, and keeps running when that check fails.
func TestInstallChecksVerifyChecksum(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	ctx := t.Context()
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "echo one\n"})
	other := buildArchive(t, "web", "2", map[string]string{"run.sh": "echo two\n"})
	good := v1.entry(srv.put("/web-1.tgz", v1.data))
	wrong := good
	wrong.VerifyChecksum = other.info.VerifyChecksum
	wantErr := "SHA256SUMS sha256 mismatch: got " + v1.info.VerifyChecksum + ", want " + other.info.VerifyChecksum

	before := treetest.Snapshot(t, env.machines)
	out, _, err := env.inst.Install(ctx, wrong, 1)
	if out != EntryFailed || !errors.Is(err, packer.ErrChecksumMismatch) || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("Install(wrong verify_checksum) = %q, %v; want failed with %q", out, err, wantErr)
	}
	treetest.AssertSame(t, env.machines, before)
	if recs, _ := env.inst.Installed(); len(recs) != 0 {
		t.Errorf("Installed() after the refused install = %+v, want none", recs)
	}

	if out, _, err := env.inst.Install(ctx, good, 2); err != nil || out != EntryInstalled {
		t.Fatalf("Install(good) = %q, %v, want %q", out, err, EntryInstalled)
	}
	installed := treetest.Snapshot(t, env.machines)
	out, _, err = env.inst.Install(ctx, wrong, 3)
	if out != EntryFailed || !errors.Is(err, packer.ErrChecksumMismatch) || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("Install(only verify_checksum changed, wrong) = %q, %v; want failed with %q", out, err, wantErr)
	}
	treetest.AssertSame(t, env.machines, installed)
	recs, _ := env.inst.Installed()
	if r := recs["web"]; r.VerifyChecksum != v1.info.VerifyChecksum || r.Serial != 2 || r.Previous != nil {
		t.Errorf("Installed()[web] after the refused change = %+v, want the good version's record", r)
	}
	assertNoLeftovers(t, env)
}
