//go:build !linux

package packer

import "os"

// newArchiveCreator returns the per-directory os.Root creator: without
// openat2 it is the cheapest confined create.
func newArchiveCreator(root *os.Root) archiveCreator {
	return &archiveDirCreator{root: root}
}
