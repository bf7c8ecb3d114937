package atomicfile

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFileReplacesWithExactMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatalf("WriteFile() = %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("content = %q, %v; want new", got, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after WriteFile, want 1 (no temp files)", len(entries))
	}
}

func TestWriteFileMissingDirLeavesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFile(path, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile into a missing directory = nil error, want one")
	}
}

func TestWriteFileOwnedKeepsIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFileOwned(path, []byte("x"), 0o640, os.Getuid(), os.Getgid()); err != nil {
		t.Fatalf("WriteFileOwned(own ids) = %v", err)
	}
}

// TestWriteFileReplacesNotRewrites checks that WriteFile puts a new file in
// place rather than rewriting the old one: a reader that opened the old
// file before the write still reads the old bytes, whole, and the path now
// names another inode. An in-place write (truncate and write) fails both.
func TestWriteFileReplacesNotRewrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	old := []byte(`{"serial":1}`)
	if err := WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	before, err := reader.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte(`{"serial":2,"longer":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(reader)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(old) {
		t.Errorf("an open descriptor of the old file reads %q after WriteFile, want the old bytes %q", got, old)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("WriteFile rewrote the old file in place; want a new file renamed over it")
	}
}

// TestUnchanged: a file stat'ed twice is unchanged; replaced by WriteFile
// (even with the same bytes) or rewritten in place at the same size with
// another time, it is not.
func TestUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.json")
	stat := func() os.FileInfo {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if err := WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	first := stat()
	if !Unchanged(first, stat()) {
		t.Error("Unchanged(a file, the same file stat'ed again) = false")
	}
	if err := WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	replaced := stat()
	if Unchanged(first, replaced) {
		t.Error("Unchanged(a file, the file WriteFile replaced it with) = true")
	}
	if err := os.WriteFile(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := replaced.ModTime().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if Unchanged(replaced, stat()) {
		t.Error("Unchanged(a file, the file rewritten in place) = true")
	}
}
