package treetest

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshotSeesEveryChange makes sure AssertSame can fail: each change
// a bad input could make to a node shows in the snapshot.
func TestSnapshotSeesEveryChange(t *testing.T) {
	tests := []struct {
		name   string
		change func(dir string) error
	}{
		{"content", func(dir string) error { return os.WriteFile(filepath.Join(dir, "m", "run.sh"), []byte("evil"), 0o755) }},
		{"mode", func(dir string) error { return os.Chmod(filepath.Join(dir, "m", "run.sh"), 0o644) }},
		{"added dot file", func(dir string) error { return os.WriteFile(filepath.Join(dir, ".stage-m"), nil, 0o600) }},
		{"removed file", func(dir string) error { return os.Remove(filepath.Join(dir, "m", "machine.yaml")) }},
		{"file became a link", func(dir string) error {
			p := filepath.Join(dir, "m", "machine.yaml")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("/etc/passwd", p)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "m"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, mode := range map[string]os.FileMode{"run.sh": 0o755, "machine.yaml": 0o644} {
				if err := os.WriteFile(filepath.Join(dir, "m", name), []byte(name), mode); err != nil {
					t.Fatal(err)
				}
			}
			before := Snapshot(t, dir)
			if len(before) != 4 {
				t.Fatalf("Snapshot() = %v, want 4 entries (root, m, 2 files)", before)
			}
			AssertSame(t, dir, before)
			if err := tt.change(dir); err != nil {
				t.Fatal(err)
			}
			after := Snapshot(t, dir)
			if maps.Equal(before, after) {
				t.Errorf("Snapshot() after %s = %v, the same as before", tt.name, after)
			}
		})
	}
}

func TestCopy(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"a/b", ".git/objects"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]os.FileMode{"a/b/run.sh": 0o755, "a/readme": 0o644, ".git/HEAD": 0o644, ".gitignore": 0o600} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "a", "link")); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	Copy(t, src, dst)
	want := Snapshot(t, src)
	for k := range want {
		if k == ".git" || filepath.Dir(k) == ".git" || filepath.Dir(filepath.Dir(k)) == ".git" || k == "a/link" {
			delete(want, k)
		}
	}
	got := Snapshot(t, dst)
	// The roots are two different temporary directories.
	delete(want, ".")
	delete(got, ".")
	if !maps.Equal(want, got) {
		t.Errorf("Copy: got %v, want %v", got, want)
	}
}
