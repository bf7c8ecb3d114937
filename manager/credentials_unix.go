//go:build unix

package manager

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a credential file owned by another user than the
// agent's.
func checkOwner(fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("is owned by uid %d, not by the agent's uid %d", st.Uid, uid)
	}
	return nil
}
