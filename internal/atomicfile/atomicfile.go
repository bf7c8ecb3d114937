// Package atomicfile replaces files so that readers, and the file system
// after a crash, see either the old content or the new one, never a mix or
// an empty file. It is github.com/google/renameio (temp file in the same
// directory, fsync, rename) plus the fsync of the parent directory that
// makes the rename itself durable.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// WriteFile replaces path with data, with mode perm exactly (no umask).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileOwned(path, data, perm, -1, -1)
}

// WriteFileOwned is WriteFile that also sets the owner and group of the new
// file before it replaces the old one; -1 leaves an id unchanged.
func WriteFileOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	// The temp file goes next to path (same file system, so the rename is
	// atomic), named "."+base+random, so directory scanners skip it.
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(perm))
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if uid != -1 || gid != -1 {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so that renames and creations in it survive a
// crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Unchanged reports whether a and b, stats of one path taken at two times,
// are of the same file left as it was between them: the same file (a
// WriteFile replaces it with another), size and modification time. A
// reader may keep what it read of a file while a new stat of it is
// Unchanged from the one it read it with.
func Unchanged(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
