package machineswatcher

import (
	"slices"
	"testing"

	"github.com/mms-io/mms/agent"
)

// TestManagerMachineNotImplied checks that compiling in the machines
// watcher (and with it package manager) does not compile in the mms_manager
// machine: only listing manager/mmsmanager in user_plugins.yaml does. This
// test binary does not import mmsmanager.
func TestManagerMachineNotImplied(t *testing.T) {
	if got := agent.RegisteredMachines(); slices.Contains(got, "mms_manager") {
		t.Errorf("RegisteredMachines() = %v: importing the machines watcher compiled in mms_manager", got)
	}
}
