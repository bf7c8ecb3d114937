package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mms-io/mms/packer"
)

// blockDiscards makes the first of inst's next deletions wait until
// release is called; entered is closed once it waits. Call it while no
// deletion runs.
func blockDiscards(t *testing.T, inst *Installer) (entered <-chan struct{}, release func()) {
	t.Helper()
	waitCleanup(t, inst)
	gate, in := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	inst.discards.crashAt = func(step string) bool {
		if first.CompareAndSwap(false, true) {
			close(in)
			<-gate
		}
		return false
	}
	var closeOnce sync.Once
	release = func() { closeOnce.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return in, release
}

// trashTrees returns the trees in M's trash directories.
func trashTrees(t *testing.T, env *testEnv) []string {
	t.Helper()
	entries, err := os.ReadDir(env.machines)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), trashPrefix) {
			out = append(out, filepath.Join(env.machines, e.Name(), trashTree))
		}
	}
	return out
}

// TestInstallRetiresOldTreeInBackground: the update that drops the older
// previous version returns with the new version live and durable while
// that tree is still being deleted; WaitCleanup sees the deletion end.
func TestInstallRetiresOldTreeInBackground(t *testing.T) {
	srv := newFileServer(t, true)
	env := newTestEnv(t, srv.Server, FetchConfig{})
	ctx := t.Context()
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "one"})
	v2 := buildArchive(t, "web", "2", map[string]string{"run.sh": "two"})
	v3 := buildArchive(t, "web", "3", map[string]string{"run.sh": "three"})
	for i, a := range []testArchive{v1, v2} {
		if _, _, err := env.inst.Install(ctx, a.entry(srv.put(fmt.Sprintf("/%d", i), a.data)), 1); err != nil {
			t.Fatal(err)
		}
	}
	_, release := blockDiscards(t, env.inst)

	if out, _, err := env.inst.Install(ctx, v3.entry(srv.put("/3", v3.data)), 2); err != nil || out != EntryUpdated {
		t.Fatalf("Install(v3) = %q, %v; want updated", out, err)
	}
	if err := env.inst.Verify(ctx, "web", true); err != nil {
		t.Errorf("Verify(web) once Install returned = %v", err)
	}
	if err := packer.VerifyTree(ctx, env.inst.prevPath("web"), v2.info.VerifyChecksum); err != nil {
		t.Errorf(".prev-web once Install returned = %v, want v2", err)
	}
	trees := trashTrees(t, env)
	if len(trees) != 1 || packer.VerifyTree(ctx, trees[0], v1.info.VerifyChecksum) != nil {
		t.Fatalf("trash once Install returned = %v, want v1's tree, still there", trees)
	}

	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := env.inst.WaitCleanup(waitCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCleanup() while the deletion is blocked = %v, want the context's deadline", err)
	}
	release()
	assertNoLeftovers(t, env)
}

// TestDiscardQueueIsBounded: with the background deletion stuck and its
// queue full, a retired tree is deleted by the caller before it returns.
func TestDiscardQueueIsBounded(t *testing.T) {
	env := newTestEnv(t, nil, FetchConfig{})
	entered, release := blockDiscards(t, env.inst)
	var dirs []string
	for i := range maxDiscardQueue + 2 {
		dir, err := env.inst.newTemp(trashPrefix, "web")
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(dir, trashTree, "f"), fmt.Sprint(i))
		dirs = append(dirs, dir)
		env.inst.discards.discard(dir)
		if i == 0 {
			<-entered
		}
	}
	// The first is being deleted (blocked), the next maxDiscardQueue wait:
	// the last was deleted at once.
	last := dirs[len(dirs)-1]
	if _, err := os.Lstat(last); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat(%s) past a full queue = %v, want it deleted at once", last, err)
	}
	if !strings.Contains(env.logs.String(), "background deletion is behind") {
		t.Errorf("logs lack the warning about the full queue:\n%s", env.logs.String())
	}
	for _, d := range dirs[:len(dirs)-1] {
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("Lstat(%s) while the deletion is blocked = %v, want it queued", d, err)
		}
	}
	release()
	assertNoLeftovers(t, env)
}

// TestDiscardGivesWayToInstalls: background deletion stops between
// batches of files while an install holds the discarder, and goes on once
// it lets go; a caller waiting for the deletion (recovery, inside an
// install) makes it go on despite the hold instead of waiting for itself.
func TestDiscardGivesWayToInstalls(t *testing.T) {
	tree := func(n int) string {
		dir := filepath.Join(t.TempDir(), "trash")
		for i := range n {
			sub := filepath.Join(dir, fmt.Sprint(i%3))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprint(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	gone := func(dir string) error {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s still there (%v)", dir, err)
		}
		return nil
	}

	// Batches: a yield before every discardBatch entries.
	dir := tree(2*discardBatch + 10)
	yields := 0
	removeYielding(dir, func() { yields++ })
	if err := os.Remove(dir); err != nil {
		t.Fatalf("the tree is not empty after removeYielding: %v", err)
	}
	if want := (2*discardBatch + 10 + 3 + discardBatch - 1) / discardBatch; yields != want {
		t.Errorf("%d yields for %d entries, want %d", yields, 2*discardBatch+13, want)
	}

	d := newDiscarder(slog.New(slog.DiscardHandler), nil)
	release := d.hold()
	held := tree(10)
	yielding := make(chan struct{})
	var once sync.Once
	d.crashAt = func(string) bool { once.Do(func() { close(yielding) }); return false }
	d.discard(held)
	<-yielding
	// Held: the deletion waits in yield, before its first batch. (Ten
	// files take far less than the wait below to delete; on a slow
	// machine this check can only pass wrongly, never fail wrongly.)
	d.mu.Lock()
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		t.Fatal("the deletion ended while an install held the discarder")
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := os.Stat(filepath.Join(held, "0", "0")); err != nil {
		t.Errorf("a file was deleted while an install held the discarder: %v", err)
	}
	// A waiter hurries it along, hold or not.
	if err := d.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := gone(held); err != nil {
		t.Error(err)
	}
	release()
	free := tree(10)
	d.discard(free)
	if err := d.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := gone(free); err != nil {
		t.Error(err)
	}
}
