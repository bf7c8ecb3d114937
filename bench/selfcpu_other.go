//go:build !unix

package bench

import (
	"os"
	"time"
)

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration { return selfUsage().cpu }

// selfUsage returns what this process has used (nothing where /proc is
// missing).
func selfUsage() usage {
	u, _ := procUsage(os.Getpid())
	return u
}
