//go:build unix

package agent

import (
	"io/fs"
	"syscall"
)

// fileID returns the device and inode of a stat result.
func fileID(st fs.FileInfo) (dev, ino uint64) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), uint64(s.Ino) //nolint:unconvert // field widths differ by platform
	}
	return 0, 0
}
