package manager

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// runStep runs one pass and checks what it reported and left behind.
func runStep(t *testing.T, f *fixture, n int, st step) {
	t.Helper()
	if st.before != nil {
		st.before(f)
	}
	before := f.inst.downloads
	rep := f.r.Reconcile(t.Context(), st.envelope(f), st.opts)
	if diff := cmp.Diff(st.want, outcomes(rep)); diff != "" {
		t.Errorf("step %d: Reconcile() results (-want +got):\n%s\nreport: %+v", n, diff, rep)
	}
	if rep.Rejected != st.rejected {
		t.Errorf("step %d: Reconcile().Rejected = %q (%v), want %q", n, rep.Rejected, rep.Err, st.rejected)
	}
	if st.rejected != "" && (rep.Err == nil || rep.Failed() == st.rejected.Warning()) {
		t.Errorf("step %d: rejected report Err = %v, Failed() = %v, want an error that is a failure unless a warning", n, rep.Err, rep.Failed())
	}
	if rep.Stale != st.stale {
		t.Errorf("step %d: Reconcile().Stale = %v, want %v", n, rep.Stale, st.stale)
	}
	for _, m := range rep.Machines {
		if want, ok := st.reasons[m.Name+" "+string(m.Outcome)]; ok && !strings.Contains(m.Reason, want) {
			t.Errorf("step %d: %s %s reason = %q, want it to contain %q", n, m.Name, m.Outcome, m.Reason, want)
		}
		if m.Tampered != st.tampered[m.Name] {
			t.Errorf("step %d: %s tampered = %q, want %q", n, m.Name, m.Tampered, st.tampered[m.Name])
		}
		if m.Outcome == EntryFailed && (rep.Err == nil || !strings.Contains(rep.Err.Error(), m.Reason)) {
			t.Errorf("step %d: %s failed (%s) but Report.Err = %v", n, m.Name, m.Reason, rep.Err)
		}
	}
	if diff := cmp.Diff(st.running, f.running()); diff != "" {
		t.Errorf("step %d: running machines (-want +got):\n%s", n, diff)
	}
	if diff := cmp.Diff(st.installed, f.inst.names()); diff != "" {
		t.Errorf("step %d: installed machines (-want +got):\n%s", n, diff)
	}
	if got := f.inst.downloads - before; got != st.downloads {
		t.Errorf("step %d: downloads = %d, want %d", n, got, st.downloads)
	}
}

// webDB is the spec of web@1 and db@1, serial 1.
func webDB(f *fixture) []byte { return f.seal(1, f.entry("web", "1", ""), f.entry("db", "1", "")) }

// webV2DB is serial 2: web@2 and db@1.
func webV2DB(f *fixture) []byte { return f.seal(2, f.entry("web", "2", ""), f.entry("db", "1", "")) }

// webByRoleDB installs web only on nodes whose role fact is web.
func webByRoleDB(f *fixture) []byte {
	return f.seal(1, f.entry("web", "1", "facts.role == 'web'"), f.entry("db", "1", ""))
}

// expiringWebByRoleDB is webByRoleDB expiring an hour after t0.
func expiringWebByRoleDB(f *fixture) []byte {
	return f.sealSpec(&spec.Spec{Serial: 1, IssuedAt: t0, Expires: t0.Add(time.Hour), Machines: []spec.Machine{
		f.entry("web", "1", "facts.role == 'web'"), f.entry("db", "1", ""),
	}})
}

// installWebDB is a first step installing web@1 and db@1.
func installWebDB() step {
	return step{
		envelope:  webDB,
		want:      []string{"web installed", "db installed"},
		running:   []string{"db@1", "web@1"},
		installed: []string{"db", "web"},
		downloads: 2,
	}
}

// handmade puts a machine the agent did not install into the machines
// directory and runs it.
func handmade(f *fixture) {
	dir := filepath.Join(f.inst.dir, "hand")
	if err := os.Mkdir(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	def := "name: hand\nversion: manual\ninitial_state: RUN\ntransitions: [{name: stop, from: [RUN], destination: STOP}]\nwatchers: [{name: tick, type: timer}]\n"
	if err := os.WriteFile(filepath.Join(dir, packer.MachineFile), []byte(def), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := f.host.LoadMachine(f.t.Context(), "hand", nil); err != nil {
		f.t.Fatal(err)
	}
	f.label["manual"] = "hand@manual"
}

// removeMachineDir deletes a machine directory as an operator might.
func removeMachineDir(f *fixture, name string) {
	if err := os.RemoveAll(filepath.Join(f.inst.dir, name)); err != nil {
		f.t.Fatal(err)
	}
}

// corruptSignature flips a bit of the first signature of a v2 envelope.
func corruptSignature(t testing.TB, env []byte) []byte {
	t.Helper()
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   []byte `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	e.Signatures[0].Sig[0] ^= 1
	out, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
