package machineswatcher

import (
	"sync/atomic"
	"testing"
)

// idleInstaller is a fakeInstaller that counts CloseIdleConnections calls.
type idleInstaller struct {
	*fakeInstaller
	closed atomic.Int32
}

func (i *idleInstaller) CloseIdleConnections() { i.closed.Add(1) }

func TestCloseDropsIdleConnections(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"]}`)
	inst := &idleInstaller{fakeInstaller: n.inst}
	n.w.inst = inst
	if err := n.w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if got := inst.closed.Load(); got != 1 {
		t.Errorf("Close() called CloseIdleConnections %d times, want 1", got)
	}
	// Close runs even when Provision failed: no installer then.
	if err := new(Watcher).Close(); err != nil {
		t.Errorf("Close() of an unprovisioned watcher = %v, want nil", err)
	}
}
