package packer

import (
	"fmt"
	"os"
	"path"
)

// archiveCreator creates the regular files of one extraction, confined to
// the stage: every create is one openat-like call relative to an open
// directory handle, never a path walked from "/".
type archiveCreator interface {
	// create creates the file p (a clean slash path under the stage whose
	// parent directories exist) exclusively, write-only, with mode perm
	// (before the umask).
	create(p string, perm os.FileMode) (*os.File, error)
	// concurrent reports whether create may be called from several
	// goroutines at once.
	concurrent() bool
	// close releases the creator's handles.
	close()
}

// archiveDirCreator creates files through an os.Root opened on their
// directory, so a create costs one openat instead of one per path element;
// the last directory's root is reused, since tar streams list a
// directory's files together. It is for one goroutine.
type archiveDirCreator struct {
	root    *os.Root
	dir     *os.Root // root of the directory files were last created in
	dirName string
}

func (c *archiveDirCreator) concurrent() bool { return false }

func (c *archiveDirCreator) create(p string, perm os.FileMode) (*os.File, error) {
	d := path.Dir(p)
	if c.dir == nil || c.dirName != d {
		c.close()
		r, err := c.root.OpenRoot(d)
		if err != nil {
			return nil, fmt.Errorf("open directory %q: %w", d, err)
		}
		c.dir, c.dirName = r, d
	}
	f, err := c.dir.OpenFile(path.Base(p), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", p, err)
	}
	return f, nil
}

func (c *archiveDirCreator) close() {
	if c.dir != nil {
		c.dir.Close()
		c.dir, c.dirName = nil, ""
	}
}
