package manager

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A skipped entry, and one whose matcher cannot be evaluated, carry the
// matcher that decided it, so status can say why without parsing the
// reason; an entry its matcher selects does not.
func TestResultCarriesMatcher(t *testing.T) {
	f := newFixture(t, nil)
	rep := f.r.Reconcile(t.Context(), f.seal(1,
		f.entry("web", "1", "identity('^web')"),
		f.entry("db", "1", "identity('^db')"),
		f.entry("cache", "1", "facts.cpus > 2"),
	), ReconcileOptions{})
	got := map[string]string{}
	for _, m := range rep.Machines {
		got[m.Name+" "+string(m.Outcome)] = m.Match
	}
	want := map[string]string{"web installed": "", "db skipped": "identity('^db')", "cache failed": "facts.cpus > 2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results' matchers (-want +got):\n%s", diff)
	}
}
