//go:build unix

package filewatcher

import (
	"os"
	"syscall"
)

// fileOwner returns the numeric owner and group of fi.
func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
