//go:build mmscrashtest

package manager

import (
	"fmt"
	"os"
)

// The environment of a binary built with the mmscrashtest tag; see
// envCrashTest.
const (
	// CrashTestStepEnv names the step at which the installer stops.
	CrashTestStepEnv = "MMS_CRASHTEST_STEP"
	// CrashTestRenamesEnv, set to 1, makes swaps use two renames instead
	// of an atomic exchange.
	CrashTestRenamesEnv = "MMS_CRASHTEST_RENAMES"
	// CrashTestPaused starts the line printed on stderr at the stop:
	// "mms crashtest: paused at STEP".
	CrashTestPaused = "mms crashtest: paused at "
)

// envCrashTest returns, in a binary built with the mmscrashtest tag, the
// hook that stops every Installer of the process at the step named by
// $MMS_CRASHTEST_STEP (a crashAt step: "download", "extract", "record",
// "rename1"…, "purge-rename1"…, "purge-record", "discard", or "recovered"
// once Recover is done): the goroutine that reaches it prints
// CrashTestPaused and the step on stderr and blocks for good, so a test
// can kill the process exactly there. The hook is nil when the variable
// is unset. noExchange is $MMS_CRASHTEST_RENAMES == "1". Release binaries
// do not contain this.
func envCrashTest() (crashAt func(step string) bool, noExchange bool) {
	noExchange = os.Getenv(CrashTestRenamesEnv) == "1"
	want := os.Getenv(CrashTestStepEnv)
	if want == "" {
		return nil, noExchange
	}
	return func(step string) bool {
		if step != want {
			return false
		}
		fmt.Fprintf(os.Stderr, "%s%s\n", CrashTestPaused, step)
		select {}
	}, noExchange
}
