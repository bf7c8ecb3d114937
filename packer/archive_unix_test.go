//go:build unix

package packer

import (
	"bytes"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCreateArchiveRejectsFIFO(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"machine.yaml": "x"})
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err := CreateArchive(t.Context(), dir, "web", &buf)
	want := `create archive "web" from ` + dir + `: unsafe entry "web/pipe": file type p--------- not allowed`
	if err == nil || err.Error() != want || !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("CreateArchive() error = %v, want %q", err, want)
	}
}
