package manager

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/mms-io/mms/spec"
)

// BenchmarkUnchangedPass measures a reconcile pass over a node with 50
// installed machines (the real Installer; the test's fake host, which
// parses each machine.yaml on every load where the real one re-reads only
// changed files) whose spec did not change: what every periodic pass and
// spec resync costs such a node. The install records are read once per
// pass (see reconcile), the installed trees checked against their stamps.
func BenchmarkUnchangedPass(b *testing.B) {
	const machines = 50
	srv := newFileServer(b, false)
	env := newTestEnv(b, srv.Server, FetchConfig{AllowHTTP: true})
	f := newFixture(b, func(c *ReconcilerConfig) {
		c.Installer = env.inst
		c.AllowHTTP = true
		c.Log = slog.New(slog.DiscardHandler)
	})
	f.host.dir = env.machines
	var entries []spec.Machine
	for i := range machines {
		name := fmt.Sprintf("m%02d", i)
		a := buildArchive(b, name, "1.0.0", nil)
		entries = append(entries, a.entry(srv.put("/"+name+".tgz", a.data)))
	}
	serial := uint64(1)
	pass := func(want EntryOutcome) {
		rep := f.r.Reconcile(b.Context(), f.seal(serial, entries...), ReconcileOptions{})
		serial++
		if len(rep.Machines) != machines {
			b.Fatalf("pass: %d results (%v), want %d", len(rep.Machines), rep.Err, machines)
		}
		for _, m := range rep.Machines {
			if m.Outcome != want {
				b.Fatalf("pass: %s %s (%s), want %s", m.Name, m.Outcome, m.Reason, want)
			}
		}
	}
	pass(EntryInstalled)
	for b.Loop() {
		pass(EntryUnchanged)
	}
}
