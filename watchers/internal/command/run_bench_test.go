//go:build unix

package command

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/watchers"
)

// BenchmarkRun runs a script that exits at once, as a monitoring check's
// exec watcher does every interval, and reports the agent's own CPU per
// run (the parent's user+system time, not the script's).
func BenchmarkRun(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "check.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	facts := map[string]any{"arch": "amd64", "cpus": 2, "hostname": "node-1"}
	e, err := NewEnv(watchers.Deps{Machine: "m", Watcher: "check", Dir: dir, Facts: func() map[string]any { return facts }})
	if err != nil {
		b.Fatal(err)
	}
	s := Spec{Line: "./check.sh", Argv: []string{"./check.sh"}, Timeout: 10 * time.Second}
	ctx := context.Background()
	before := selfCPU(b)
	b.ResetTimer()
	for b.Loop() {
		out, err := e.Run(ctx, s)
		if err != nil || out.ExitCode != 0 {
			b.Fatalf("Run: %v, exit %d", err, out.ExitCode)
		}
	}
	b.ReportMetric(float64(selfCPU(b)-before)/float64(b.N)/1e3, "cpu-µs/op")
}

// selfCPU returns this process's user+system time, its children's not
// included.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
