package packer

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// archiveResolve confines openat2 to the stage: no "..", absolute path or
// symlink (magic or not) may take a lookup out of it, nor a mount point.
const archiveResolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// newArchiveCreator returns, on Linux, a creator that opens every file with
// one openat2(2) relative to the stage directory with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS: the kernel walks the path and refuses to leave the
// stage, and several goroutines can create at once. Where openat2 is not
// available (kernels before 5.6, or a seccomp filter that denies it) the
// per-directory os.Root creator is used.
func newArchiveCreator(root *os.Root) archiveCreator {
	fallback := &archiveDirCreator{root: root}
	d, err := root.Open(".")
	if err != nil {
		return fallback
	}
	c := &archiveAt2Creator{dir: d, fd: int(d.Fd())}
	probe, err := c.openat2(".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		d.Close()
		return fallback
	}
	unix.Close(probe)
	return c
}

// archiveAt2Creator creates files with openat2 relative to the stage.
type archiveAt2Creator struct {
	dir *os.File // the stage directory; fd is its descriptor
	fd  int
}

func (c *archiveAt2Creator) concurrent() bool { return true }

func (c *archiveAt2Creator) create(p string, perm os.FileMode) (*os.File, error) {
	fd, err := c.openat2(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, uint64(perm.Perm()))
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", p, &os.PathError{Op: "openat2", Path: p, Err: err})
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openat2 opens p under the stage, confined, retrying on EINTR.
func (c *archiveAt2Creator) openat2(p string, flags int, mode uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: mode, Resolve: archiveResolve}
	for {
		fd, err := unix.Openat2(c.fd, p, &how)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

func (c *archiveAt2Creator) close() { c.dir.Close() }
