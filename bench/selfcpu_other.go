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

// selfFaults returns the minor page faults this process has taken (0
// where /proc is missing).
func selfFaults() int64 {
	n, _ := ProcFaults(os.Getpid())
	return n
}
