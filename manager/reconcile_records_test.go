package manager

import (
	"strings"
	"testing"
)

// TestPassReadsInstallRecordsOnce: a pass reads the install records (a
// file per installed machine) once, for its evaluation, its purge and its
// rollout and health decisions, and again only after a purge tried to
// remove some.
func TestPassReadsInstallRecordsOnce(t *testing.T) {
	f := newFixture(t, nil)
	listings := func() int {
		f.inst.mu.Lock()
		defer f.inst.mu.Unlock()
		n := f.inst.listings
		f.inst.listings = 0
		return n
	}
	f.pass(f.seal(1, f.entry("web", "1", ""), f.entry("db", "1", "")), []string{"web installed", "db installed"}, "db@1", "web@1")
	if n := listings(); n != 1 {
		t.Errorf("a pass that installs read the install records %d times, want 1", n)
	}
	f.pass(f.seal(2, f.entry("web", "2", ""), f.entry("db", "1", "")), []string{"web updated", "db unchanged"}, "db@1", "web@2")
	if n := listings(); n != 1 {
		t.Errorf("a pass that updates read the install records %d times, want 1", n)
	}
	// An entry whose matcher fails says what becomes of its installed
	// copy, from the same reading.
	rep := f.pass(f.seal(3, f.entry("web", "2", ""), f.entry("db", "1", "nosuchfunc()")), []string{"web unchanged", "db failed"}, "db@1", "web@2")
	if got := result(t, rep, "db").Reason; !strings.Contains(got, "the installed copy is kept") {
		t.Errorf("db: reason %q does not say its installed copy is kept", got)
	}
	if n := listings(); n != 1 {
		t.Errorf("a pass with a failing matcher read the install records %d times, want 1", n)
	}
	f.pass(f.seal(4, f.entry("web", "2", "")), []string{"web unchanged", "db purged"}, "web@2")
	if n := listings(); n != 2 {
		t.Errorf("a pass that purged read the install records %d times, want 2 (once more after the purge)", n)
	}
}
