//go:build unix

package fdlimit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Raise raises this process's soft limit on open files as far as it may:
// to need when it can (need ≤ 0: to the hard limit), else to the hard
// limit, and returns the limit now in force. Go itself raises the soft
// limit to the hard one at start on Linux; Raise makes that explicit and
// portable, and changes nothing when the limit is already high enough.
func Raise(need int) (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open file limit: %w", err)
	}
	if need <= 0 {
		need = int(min(lim.Max, 1<<30))
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
