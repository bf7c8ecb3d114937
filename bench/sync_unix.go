//go:build unix

package bench

import "golang.org/x/sys/unix"

// syncDisks flushes every file system (sync(2)), so a timed step does not
// pay for writes that came before it.
func syncDisks() { unix.Sync() }
