package packer

import (
	"os"

	"golang.org/x/sys/unix"
)

// On Linux the tree is flushed with one syncfs(2) at the end, which costs
// one journal commit instead of one per file; each file only starts its
// write-back when it is closed, so the final flush finds little to do.

// archiveAfterFile starts write-back of f's data without waiting for it.
func archiveAfterFile(f *os.File, noSync bool) error {
	if noSync {
		return nil
	}
	return archiveControl(f, func(fd int) error {
		return unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// archiveSyncDir does nothing: syncfs in archiveSyncAll covers directories.
func archiveSyncDir(*os.File) error { return nil }

// archiveSyncAll flushes the file system that holds the root.
func archiveSyncAll(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return archiveControl(d, unix.Syncfs)
}

// archiveControl runs fn on f's descriptor.
func archiveControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
