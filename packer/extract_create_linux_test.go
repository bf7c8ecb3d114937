package packer

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNewArchiveCreatorUsesOpenat2 checks that on a kernel with openat2
// files are created with it (concurrently, one system call each), and
// that the fallback is only for kernels without it.
func TestNewArchiveCreatorUsesOpenat2(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("this kernel has no openat2: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	c := newArchiveCreator(root)
	defer c.close()
	if _, ok := c.(*archiveAt2Creator); !ok || !c.concurrent() {
		t.Fatalf("newArchiveCreator() = %T, want the concurrent openat2 creator", c)
	}
}
