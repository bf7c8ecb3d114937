package manager

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mms-io/mms/internal/treetest"
)

// TestCrashDuringPurge stops a purge at each point a crash can hit it
// (after the live tree, or also the previous one, was renamed to trash,
// before the record was removed) and restarts: the machine's name is gone
// from the machines directory at once (the host never sees half a tree),
// Recover deletes the trash, and the next purge finishes: no record, no
// tree, no leftovers, the other machine untouched.
func TestCrashDuringPurge(t *testing.T) {
	v1 := buildArchive(t, "web", "1", map[string]string{"run.sh": "one"})
	v2 := buildArchive(t, "web", "2", map[string]string{"run.sh": "two"})
	db := buildArchive(t, "db", "1", map[string]string{"run.sh": "db"})
	tests := []struct {
		name  string
		moved []string // renamed to trash before the crash
	}{
		{name: "live tree moved", moved: []string{"web"}},
		{name: "live and previous trees moved", moved: []string{"web", ".prev-web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFileServer(t, true)
			env := newTestEnv(t, srv.Server, FetchConfig{})
			ctx := t.Context()
			for i, a := range []testArchive{v1, v2, db} {
				if _, _, err := env.inst.Install(ctx, a.entry(srv.put("/"+a.info.Name+a.info.Checksum, a.data)), uint64(i+1)); err != nil {
					t.Fatal(err)
				}
			}
			dbTree := treetest.Snapshot(t, filepath.Join(env.machines, "db"))
			// The purge's first steps, as Purge does them, then the crash.
			for i, name := range tt.moved {
				trash := filepath.Join(env.machines, trashPrefix+"web-"+string(rune('a'+i)))
				if err := os.Mkdir(trash, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(env.machines, name), filepath.Join(trash, trashTree)); err != nil {
					t.Fatal(err)
				}
			}

			inst := env.reopen(t)
			if err := inst.Recover(ctx); err != nil {
				t.Fatalf("Recover() after a crash mid-purge = %v", err)
			}
			env.inst = inst
			assertNoLeftovers(t, env)
			if _, err := os.Lstat(filepath.Join(env.machines, "web")); !os.IsNotExist(err) {
				t.Errorf("Lstat(web) after recovery = %v, want the purged name still gone", err)
			}
			if err := inst.Purge(ctx, "web"); err != nil {
				t.Fatalf("Purge(web) after recovery = %v", err)
			}
			waitCleanup(t, inst)
			recs, err := inst.Installed()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := recs["web"]; ok || len(recs) != 1 {
				t.Errorf("Installed() after the finished purge = %v, want only db", recs)
			}
			entries, err := os.ReadDir(env.machines)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "db" {
				t.Errorf("machines dir holds %v, want only db", entries)
			}
			if err := inst.Verify(ctx, "db", true); err != nil {
				t.Errorf("Verify(db) = %v", err)
			}
			treetest.AssertSame(t, filepath.Join(env.machines, "db"), dbTree)
			assertNoLeftovers(t, env)
		})
	}
}
