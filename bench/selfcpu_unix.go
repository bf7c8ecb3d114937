//go:build unix

package bench

import (
	"time"

	"golang.org/x/sys/unix"
)

// selfCPU returns the CPU time (user + system) this process has used.
func selfCPU() time.Duration { return selfUsage().cpu }

// selfUsage returns what this process has used, from getrusage(2): its CPU
// time is finer than /proc's 10 ms ticks, which a quick row of a few agents
// can use less of than one of.
func selfUsage() usage {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		u, _ := procUsage(unix.Getpid())
		return u
	}
	return usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), faults: ru.Minflt}
}
