package manager

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchangeDirs swaps a and b atomically with renameat2(RENAME_EXCHANGE):
// there is no moment at which either path is missing. ok is false, with
// nothing changed, when the kernel or file system does not support it;
// the caller then falls back to two renames.
func exchangeDirs(a, b string) (ok bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	}
	return false, &os.LinkError{Op: "renameat2 exchange", Old: a, New: b, Err: err}
}
