//go:build unix

package bench

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdLimit raises this process's open file limit as far as it may (to need
// when it can, else to the hard limit) and returns it.
func fdLimit(need int) (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open file limit: %w", err)
	}
	if lim.Cur >= uint64(need) {
		return int(min(lim.Cur, 1<<30)), nil
	}
	want := unix.Rlimit{Cur: uint64(need), Max: max(lim.Max, uint64(need))} // a higher hard limit only with CAP_SYS_RESOURCE
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
		return need, nil
	}
	if lim.Max > lim.Cur {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise the open file limit: %w", err)
		}
	}
	return int(min(lim.Cur, 1<<30)), nil
}
