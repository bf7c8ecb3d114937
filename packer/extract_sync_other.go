//go:build !linux

package packer

import "os"

// Without syncfs(2) every file and directory is flushed on its own.

// archiveAfterFile flushes f.
func archiveAfterFile(f *os.File, noSync bool) error {
	if noSync {
		return nil
	}
	return f.Sync()
}

// archiveSyncDir flushes the directory f.
func archiveSyncDir(f *os.File) error { return f.Sync() }

// archiveSyncAll flushes the root directory itself.
func archiveSyncAll(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
