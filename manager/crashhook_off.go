//go:build !mmscrashtest

package manager

// envCrashTest returns no hook: only a binary built with the mmscrashtest
// tag (the process-level crash test's) can be stopped at an install step
// from its environment.
func envCrashTest() (crashAt func(step string) bool, noExchange bool) { return nil, false }
