//go:build !unix

package bench

import (
	"os"
	"time"
)

// selfCPU returns the CPU time this process has used (0 where /proc is
// missing).
func selfCPU() time.Duration {
	total, _ := ProcCPU(os.Getpid())
	return total
}
