package manager

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// interruptingInstaller installs like the fake, then interrupts the pass,
// as a newer spec arriving right after a download would.
type interruptingInstaller struct {
	*fakeInstaller
	interrupt context.CancelCauseFunc
}

func (i *interruptingInstaller) Install(ctx context.Context, m spec.Machine, serial uint64) (EntryOutcome, *machine.Definition, error) {
	out, def, err := i.fakeInstaller.Install(ctx, m, serial)
	i.interrupt(errors.New("a newer spec arrived"))
	return out, def, err
}

// ctxHost is the fake host that, like the agent's, fails a request whose
// context has ended.
type ctxHost struct{ *fakeHost }

func (h ctxHost) LoadMachine(ctx context.Context, name string, def watchers.Definition) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.fakeHost.LoadMachine(ctx, name, def)
}

// TestInterruptedPassKeepsGoodVersions: a pass interrupted (a newer spec)
// right after an archive was installed still loads it; an interruption
// never passes for a version that fails to load (which would never be
// tried again), and the entries not started are left for the next pass.
func TestInterruptedPassKeepsGoodVersions(t *testing.T) {
	var inst *interruptingInstaller
	var host ctxHost
	f := newFixture(t, func(c *ReconcilerConfig) {
		inst = &interruptingInstaller{fakeInstaller: c.Installer.(*fakeInstaller)}
		host = ctxHost{c.Host.(*fakeHost)}
		c.Installer, c.Host, c.Concurrency = inst, host, 1
	})
	soft, cancel := context.WithCancelCause(t.Context())
	inst.interrupt = cancel
	rep := f.r.Reconcile(t.Context(), f.seal(1, f.entry("web", "1", ""), f.entry("db", "1", "")), ReconcileOptions{Interrupt: soft})
	// One entry got its slot first (concurrency 1), was installed, and the
	// newer spec arrived: it is loaded all the same; the other never starts.
	var first, second MachineResult
	for _, m := range rep.Machines {
		if m.Outcome == EntryInstalled {
			first = m
		} else {
			second = m
		}
	}
	if first.Name == "" || second.Outcome != EntryFailed || !second.Retryable || !strings.Contains(second.Reason, "not started: a newer spec arrived") {
		t.Fatalf("interrupted pass = %+v, want one entry installed and the other not started", rep.Machines)
	}
	if r := f.running(); len(r) != 1 || r[0] != first.Name+"@1" {
		t.Errorf("running = %v, want %s@1", r, first.Name)
	}
	inst.interrupt = func(error) {}
	rep = f.r.Reconcile(t.Context(), f.seal(1, f.entry("web", "1", ""), f.entry("db", "1", "")), ReconcileOptions{})
	for _, m := range rep.Machines {
		want := EntryInstalled
		if m.Name == first.Name {
			want = EntryUnchanged
		}
		if m.Outcome != want {
			t.Errorf("next pass: %s = %+v, want %s", m.Name, m, want)
		}
	}
}
