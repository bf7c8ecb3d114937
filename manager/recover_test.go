package manager

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/packer"
)

// crashSteps are the points at which the fault hook stops an operation;
// an operation that ends before a step never reaches it.
var crashSteps = []string{"download", "extract", "record", "rename1", "rename2", "rename3", "rename4"}

// extractedHash is the tree hash a correct install of a leaves live.
func extractedHash(t *testing.T, a testArchive) string {
	t.Helper()
	stage := t.TempDir()
	x, err := packer.ExtractArchive(t.Context(), bytes.NewReader(a.data), stage,
		packer.Expect{Name: a.info.Name, Checksum: a.info.Checksum, VerifyChecksum: a.info.VerifyChecksum},
		packer.ExtractOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return treeHash(t, x.Dir)
}

// liveHash is the tree hash of M/<name>, or "absent".
func liveHash(t *testing.T, env *testEnv, name string) string {
	t.Helper()
	dir := filepath.Join(env.machines, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "absent"
	}
	return treeHash(t, dir)
}

// crashHook stops at step and reports whether it got there.
func crashHook(step string, hit *bool) func(string) bool {
	return func(s string) bool {
		if s == step {
			*hit = true
			return true
		}
		return false
	}
}

func TestCrashDuringInstall(t *testing.T) {
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "one", "lib/a": "a1"})
	v2 := buildArchive(t, "web", "2", map[string]string{"run.sh": "two", "lib/b": "b2"})
	v3 := buildArchive(t, "web", "3", map[string]string{"run.sh": "three"})
	hashes := map[string]string{"absent": "absent", "v1": extractedHash(t, v1), "v2": extractedHash(t, v2), "v3": extractedHash(t, v3)}
	nameOf := func(h string) string {
		for k, v := range hashes {
			if v == h {
				return k
			}
		}
		return "something else"
	}

	scenarios := []struct {
		name   string
		before []testArchive // installed first
		crash  testArchive   // the install that crashes
		old    string        // what is live before it
		new    string
	}{
		{name: "fresh", crash: v1, old: "absent", new: "v1"},
		{name: "update", before: []testArchive{v1}, crash: v2, old: "v1", new: "v2"},
		{name: "update with a previous version", before: []testArchive{v1, v2}, crash: v3, old: "v2", new: "v3"},
	}
	for _, exchange := range []bool{true, false} {
		for _, sc := range scenarios {
			for _, step := range crashSteps {
				t.Run(fmt.Sprintf("exchange=%v/%s/%s", exchange, sc.name, step), func(t *testing.T) {
					t.Parallel()
					srv := newFileServer(t, true)
					env := newTestEnv(t, srv.Server, FetchConfig{})
					env.inst.noExchange = !exchange
					for n, a := range sc.before {
						if _, _, err := env.inst.Install(t.Context(), a.entry(srv.put(fmt.Sprintf("/%d", n), a.data)), uint64(n+1)); err != nil {
							t.Fatal(err)
						}
					}
					hit := false
					env.inst.crashAt = crashHook(step, &hit)
					e := sc.crash.entry(srv.put("/crash", sc.crash.data))
					_, _, err := env.inst.Install(t.Context(), e, 9)
					if !hit {
						if err != nil {
							t.Fatalf("Install without reaching %s = %v", step, err)
						}
						t.Skipf("this install has no step %s", step)
					}
					if !errors.Is(err, errCrashed) {
						t.Fatalf("Install crashed at %s = %v, want the simulated crash", step, err)
					}

					inst := env.reopen(t)
					env.inst = inst
					if err := inst.Recover(t.Context()); err != nil {
						t.Fatalf("Recover() = %v", err)
					}
					got := nameOf(liveHash(t, env, "web"))
					if got != sc.old && got != sc.new {
						t.Fatalf("after a crash at %s and Recover, live is %s, want %s or %s", step, got, sc.old, sc.new)
					}
					t.Logf("crash at %s → live %s", step, got)
					assertNoLeftovers(t, env)
					checkConsistent(t, env, inst, hashes, nameOf)

					// The next reconcile converges on the new version.
					out, _, err := inst.Install(t.Context(), e, 9)
					if err != nil {
						t.Fatalf("Install after Recover = %v", err)
					}
					if (got == sc.new) != (out == EntryUnchanged) {
						t.Errorf("Install after Recover = %q with %s live before", out, got)
					}
					if h := nameOf(liveHash(t, env, "web")); h != sc.new {
						t.Errorf("live after the next Install = %s, want %s", h, sc.new)
					}
					assertNoLeftovers(t, env)
				})
			}
		}
	}
}

// checkConsistent checks that the record matches the live tree and that
// .prev-web exists exactly when the record names a previous version, and
// verifies against it.
func checkConsistent(t *testing.T, env *testEnv, inst *Installer, hashes map[string]string, nameOf func(string) string) {
	t.Helper()
	recs, err := inst.Installed()
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := recs["web"]
	live := liveHash(t, env, "web")
	if !ok {
		if live != "absent" {
			t.Fatalf("no record but live is %s", nameOf(live))
		}
		return
	}
	if rec.Phase != PhaseInstalled {
		t.Errorf("record phase = %q after Recover", rec.Phase)
	}
	if err := inst.Verify(t.Context(), "web", true); err != nil {
		t.Errorf("Verify(web) after Recover = %v", err)
	}
	prev := filepath.Join(env.machines, ".prev-web")
	_, statErr := os.Stat(prev)
	switch {
	case rec.Previous == nil && statErr == nil:
		t.Errorf("record has no previous version but %s exists (%s)", prev, nameOf(treeHash(t, prev)))
	case rec.Previous != nil && statErr != nil:
		t.Errorf("record names previous %s but %s: %v", rec.Previous.Checksum, prev, statErr)
	case rec.Previous != nil:
		if err := packer.VerifyTree(t.Context(), prev, rec.Previous.VerifyChecksum); err != nil {
			t.Errorf(".prev-web does not match the recorded previous version: %v", err)
		}
	}
}

func TestCrashDuringRollback(t *testing.T) {
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "one"})
	v2 := buildArchive(t, "web", "2", map[string]string{"run.sh": "two"})
	hashes := map[string]string{"v1": extractedHash(t, v1), "v2": extractedHash(t, v2)}
	nameOf := func(h string) string {
		for k, v := range hashes {
			if v == h {
				return k
			}
		}
		return "something else"
	}
	for _, exchange := range []bool{true, false} {
		for _, step := range crashSteps[2:] {
			t.Run(fmt.Sprintf("exchange=%v/%s", exchange, step), func(t *testing.T) {
				t.Parallel()
				srv := newFileServer(t, true)
				env := newTestEnv(t, srv.Server, FetchConfig{})
				env.inst.noExchange = !exchange
				for n, a := range []testArchive{v1, v2} {
					if _, _, err := env.inst.Install(t.Context(), a.entry(srv.put(fmt.Sprintf("/%d", n), a.data)), uint64(n+1)); err != nil {
						t.Fatal(err)
					}
				}
				hit := false
				env.inst.crashAt = crashHook(step, &hit)
				err := env.inst.Rollback(t.Context(), "web")
				if !hit {
					t.Skipf("rollback has no step %s (err %v)", step, err)
				}
				inst := env.reopen(t)
				if err := inst.Recover(t.Context()); err != nil {
					t.Fatalf("Recover() = %v", err)
				}
				got := nameOf(liveHash(t, env, "web"))
				if got != "v1" && got != "v2" {
					t.Fatalf("live after a crashed rollback = %s", got)
				}
				t.Logf("crash at %s → live %s", step, got)
				assertNoLeftovers(t, env)
				checkConsistent(t, env, inst, hashes, nameOf)
			})
		}
	}
}

// TestRecoverUndoesBrokenSwaps covers the recovery table's "undo" rows:
// the new tree is damaged, so the old one is put back.
func TestRecoverUndoesBrokenSwaps(t *testing.T) {
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "one"})
	v2 := buildArchive(t, "web", "2", map[string]string{"run.sh": "two"})
	v3 := buildArchive(t, "web", "3", map[string]string{"run.sh": "three"})
	tests := []struct {
		name     string
		exchange bool
		step     string
		// damage breaks the new tree after the crash.
		damage func(t *testing.T, env *testEnv)
	}{
		{name: "stage incomplete before the swap", exchange: true, step: "record", damage: func(t *testing.T, env *testEnv) {
			removeInStage(t, env, "web", "run.sh")
		}},
		{name: "between the two renames, stage incomplete", exchange: false, step: "rename1", damage: func(t *testing.T, env *testEnv) {
			removeInStage(t, env, "web", "run.sh")
		}},
		{name: "after the exchange, live damaged", exchange: true, step: "rename1", damage: func(t *testing.T, env *testEnv) {
			writeTestFile(t, filepath.Join(env.machines, "web", "run.sh"), "broken")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFileServer(t, true)
			env := newTestEnv(t, srv.Server, FetchConfig{})
			env.inst.noExchange = !tt.exchange
			for n, a := range []testArchive{v1, v2} {
				if _, _, err := env.inst.Install(t.Context(), a.entry(srv.put(fmt.Sprintf("/%d", n), a.data)), uint64(n+1)); err != nil {
					t.Fatal(err)
				}
			}
			before := treetest.Snapshot(t, env.machines)
			recsBefore, _ := env.inst.Installed()
			hit := false
			env.inst.crashAt = crashHook(tt.step, &hit)
			if _, _, err := env.inst.Install(t.Context(), v3.entry(srv.put("/3", v3.data)), 3); !hit || !errors.Is(err, errCrashed) {
				t.Fatalf("Install = %v (hit %v), want a crash at %s", err, hit, tt.step)
			}
			tt.damage(t, env)
			inst := env.reopen(t)
			if err := inst.Recover(t.Context()); err != nil {
				t.Fatalf("Recover() = %v", err)
			}
			// Back to exactly v2 live with v1 kept, and the old record.
			treetest.AssertSame(t, env.machines, before)
			assertNoLeftovers(t, env)
			recsAfter, _ := inst.Installed()
			if recsAfter["web"].Checksum != recsBefore["web"].Checksum || recsAfter["web"].Previous == nil ||
				recsAfter["web"].Previous.Checksum != v1.info.Checksum {
				t.Errorf("record after Recover = %+v, want v2 with previous v1", recsAfter["web"])
			}
		})
	}
}

// removeInStage deletes file from the machine tree in name's stage.
func removeInStage(t *testing.T, env *testEnv, name, file string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(env.machines, stagePrefix+name+"-*", name, file))
	if len(matches) != 1 {
		t.Fatalf("stage files %v, want one", matches)
	}
	if err := os.Remove(matches[0]); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverRemovesLeftovers(t *testing.T) {
	env := newTestEnv(t, nil, FetchConfig{})
	for _, p := range []string{".stage-web-123/web/machine.yaml", ".trash-db-9/tree/x", ".stage-other-1/junk"} {
		writeTestFile(t, filepath.Join(env.machines, p), "x")
	}
	writeTestFile(t, filepath.Join(env.state, "installed", recordTempPrefix+"web.json42"), "{")
	writeTestFile(t, filepath.Join(env.machines, "keep", "machine.yaml"), "x")
	if err := env.inst.Recover(t.Context()); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	assertNoLeftovers(t, env)
	if _, err := os.Stat(filepath.Join(env.machines, "keep", "machine.yaml")); err != nil {
		t.Errorf("Recover touched a machine it did not install: %v", err)
	}
}

func TestRecoverKeepsLeftoversOfUnreadableRecords(t *testing.T) {
	env := newTestEnv(t, nil, FetchConfig{})
	stage := filepath.Join(env.machines, ".stage-web-77", "web", "machine.yaml")
	writeTestFile(t, stage, "x")
	writeTestFile(t, filepath.Join(env.state, "installed", "web.json"), "{not json")
	err := env.inst.Recover(t.Context())
	if err == nil || !strings.Contains(err.Error(), `left .stage-web-77 in place: the record of "web" is unreadable`) {
		t.Errorf("Recover() with a corrupt record = %v", err)
	}
	if _, err := os.Stat(stage); err != nil {
		t.Errorf("the stage of a machine with an unreadable record was removed: %v", err)
	}
}
