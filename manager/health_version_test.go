package manager

import (
	"testing"
	"time"
)

// TestUnhealthyReasonNamesTheVersion: the reason of a rollback names the
// version that failed by name and checksum, so a rollout halted by it
// names the version although no node runs it any more.
func TestUnhealthyReasonNamesTheVersion(t *testing.T) {
	f := newFixture(t, nil)
	f.pass(f.seal(1, f.entry("web", "1", "")), []string{"web installed"}, "web@1")
	v2e := gated(f.entry("web", "2", ""))
	v2 := f.seal(2, v2e)
	f.pass(v2, []string{"web updated"}, "web@2")
	st, ok := f.host.MachineState("web")
	if !ok || st.Version == "" {
		t.Fatalf("the host runs web as %+v (%v), want a version", st, ok)
	}
	f.advance(time.Second)
	f.host.enter("web", "BROKEN", f.clock())
	rep := f.pass(v2, []string{"web rolled_back"}, "web@1")
	want := "version " + st.Version + " (" + short(v2e.Checksum) + ") unhealthy: entered BROKEN; rolled back to the previous version"
	if r := result(t, rep, "web"); r.Reason != want {
		t.Errorf("web's reason = %q, want %q", r.Reason, want)
	}
}
