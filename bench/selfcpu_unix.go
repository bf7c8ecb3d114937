//go:build unix

package bench

import (
	"time"

	"golang.org/x/sys/unix"
)

// selfCPU returns the CPU time (user + system) this process has used, from
// getrusage(2): finer than /proc's 10 ms ticks, which a quick row of a few
// agents can use less of than one of.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		total, _ := ProcCPU(unix.Getpid())
		return total
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfFaults returns the minor page faults this process has taken, from
// getrusage(2).
func selfFaults() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		n, _ := ProcFaults(unix.Getpid())
		return n
	}
	return ru.Minflt
}
