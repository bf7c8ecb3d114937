package manager

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestReconcileEntriesIndependent checks that a slow entry does not hold
// up the others: while web's install is blocked, db is installed and
// loaded.
func TestReconcileEntriesIndependent(t *testing.T) {
	f := newFixture(t, nil)
	unblock := make(chan struct{})
	f.inst.block["web"] = unblock
	done := make(chan PassReport, 1)
	go func() { done <- f.r.Reconcile(t.Context(), webDB(f), ReconcileOptions{}) }()
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := f.running(); !cmp.Equal(got, []string{"db@1"}) {
			return fmt.Errorf("running = %v while web is blocked, want [db@1]", got)
		}
		return nil
	})
	close(unblock)
	rep := <-done
	if diff := cmp.Diff([]string{"web installed", "db installed"}, outcomes(rep)); diff != "" {
		t.Errorf("Reconcile() results (-want +got):\n%s", diff)
	}
}

// TestReconcileCancelled checks that a pass cut short by its context
// reports the entries it could not finish as failed.
func TestReconcileCancelled(t *testing.T) {
	f := newFixture(t, nil)
	f.inst.block["web"] = make(chan struct{}) // never unblocked
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan PassReport, 1)
	go func() { done <- f.r.Reconcile(ctx, webDB(f), ReconcileOptions{}) }()
	natstest.Eventually(t, 10*time.Second, func() error {
		if len(f.running()) != 1 {
			return errors.New("db not running yet")
		}
		return nil
	})
	cancel()
	rep := <-done
	if diff := cmp.Diff([]string{"web failed", "db installed"}, outcomes(rep)); diff != "" {
		t.Errorf("Reconcile() results (-want +got):\n%s", diff)
	}
	if rep.Err == nil || !strings.Contains(rep.Err.Error(), "context canceled") {
		t.Errorf("Reconcile().Err = %v, want it to say the context was cancelled", rep.Err)
	}
}

// TestReconcilePlanCachedPerDigest checks that matchers are compiled once
// per accepted spec, not once per pass.
func TestReconcilePlanCachedPerDigest(t *testing.T) {
	f := newFixture(t, nil)
	f.r.Reconcile(t.Context(), webByRoleDB(f), ReconcileOptions{})
	first := f.r.plan
	f.r.Reconcile(t.Context(), webByRoleDB(f), ReconcileOptions{})
	if f.r.plan != first {
		t.Errorf("second pass over the same spec built a new plan")
	}
	f.r.Reconcile(t.Context(), webV2DB(f), ReconcileOptions{})
	if f.r.plan == first || f.r.plan.digest == first.digest {
		t.Errorf("a new spec reused the old plan")
	}
}

// TestReconcileInvalidHeader checks that a spec whose header is invalid
// (here an unsigned payload, in insecure mode, that expires before it was
// issued) is rejected as a whole.
func TestReconcileInvalidHeader(t *testing.T) {
	f := newFixture(t, func(c *ReconcilerConfig) { c.Trust = trustOf(TrustConfig{Unsigned: true}) })
	payload := base64.StdEncoding.EncodeToString([]byte(`{"serial":1,"issued_at":"2026-03-01T12:04:00Z","expires":"2026-03-01T12:02:00Z","machines":[]}`))
	env := []byte(`{"payloadType":"` + packer.PayloadType + `","payload":"` + payload + `","signatures":[]}`)
	rep := f.r.Reconcile(t.Context(), env, ReconcileOptions{})
	if rep.Rejected != RejectInvalid || !errors.Is(rep.Err, spec.ErrInvalid) {
		t.Fatalf("Reconcile(expires before issued_at) = %q, %v; want %q wrapping spec.ErrInvalid", rep.Rejected, rep.Err, RejectInvalid)
	}
}

// TestReconcileCorruptLedger checks that an unreadable replay ledger stops
// the pass with RejectError rather than reopening the replay window.
func TestReconcileCorruptLedger(t *testing.T) {
	f := newFixture(t, nil)
	state := f.r.cfg.StateDir
	if err := os.WriteFile(filepath.Join(state, LedgerFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := f.r.Reconcile(t.Context(), webDB(f), ReconcileOptions{})
	if rep.Rejected != RejectError || !rep.Failed() || len(rep.Machines) != 0 {
		t.Fatalf("Reconcile() with a corrupt ledger = %+v, want RejectError and nothing done", rep)
	}
	if got := f.inst.names(); len(got) != 0 {
		t.Errorf("installed %v with a corrupt ledger, want nothing", got)
	}
}

func TestNewReconciler(t *testing.T) {
	pub, _, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	valid := func() ReconcilerConfig {
		return ReconcilerConfig{
			Installer: newFakeInstaller(dir), Host: newFakeHost(dir), StateDir: dir,
			Trust: trustOf(TrustConfig{Keys: []ed25519.PublicKey{pub}}),
		}
	}
	tests := []struct {
		name    string
		change  func(*ReconcilerConfig)
		wantErr string
	}{
		{name: "valid", change: func(*ReconcilerConfig) {}},
		{name: "insecure without keys", change: func(c *ReconcilerConfig) { c.Trust = trustOf(TrustConfig{Unsigned: true}) }},
		{name: "no installer", change: func(c *ReconcilerConfig) { c.Installer = nil }, wantErr: "installer is required"},
		{name: "no host", change: func(c *ReconcilerConfig) { c.Host = nil }, wantErr: "host is required"},
		{name: "no state dir", change: func(c *ReconcilerConfig) { c.StateDir = "" }, wantErr: "state dir is required"},
		{name: "trust not resolved", change: func(c *ReconcilerConfig) { c.Trust = Trust{} }, wantErr: "trust is required"},
		{name: "negative concurrency", change: func(c *ReconcilerConfig) { c.Concurrency = -1 }, wantErr: "concurrency -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.change(&cfg)
			_, err := NewReconciler(cfg)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("NewReconciler() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRejectionOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Rejection
	}{
		{name: "nil", err: nil, want: ""},
		{name: "replayed", err: fmt.Errorf("open: %w", packer.ErrReplayed), want: RejectReplayed},
		{name: "bad signature", err: packer.ErrBadSignature, want: RejectBadSignature},
		{name: "unknown key", err: packer.ErrUnknownKey, want: RejectUnknownKey},
		{name: "below threshold", err: packer.ErrBelowThreshold, want: RejectBelowThreshold},
		{name: "unsigned", err: packer.ErrUnsigned, want: RejectUnsigned},
		{name: "equivocation", err: packer.ErrEquivocation, want: RejectEquivocation},
		{name: "expired", err: packer.ErrExpired, want: RejectExpired},
		{name: "not yet valid", err: packer.ErrNotYetValid, want: RejectNotYetValid},
		{name: "serial ahead", err: packer.ErrSerialAhead, want: RejectSerialAhead},
		{name: "serial ahead from spec", err: spec.CheckSerial(math.MaxUint64, time.Now()), want: RejectSerialAhead},
		{name: "malformed", err: packer.ErrMalformed, want: RejectMalformed},
		{name: "legacy", err: packer.ErrLegacyRefused, want: RejectLegacy},
		{name: "invalid", err: spec.ErrInvalid, want: RejectInvalid},
		{name: "other", err: errors.New("disk full"), want: RejectError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RejectionOf(tt.err); got != tt.want {
				t.Errorf("RejectionOf(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
	for _, r := range []Rejection{RejectReplayed, RejectMissing} {
		if !r.Warning() {
			t.Errorf("%q.Warning() = false, want true", r)
		}
	}
	for _, r := range []Rejection{RejectBadSignature, RejectExpired, RejectMalformed, RejectError} {
		if r.Warning() {
			t.Errorf("%q.Warning() = true, want false", r)
		}
	}
}

func TestReportSummaries(t *testing.T) {
	rep := PassReport{Machines: []MachineResult{
		{Name: "a", Outcome: EntryInstalled}, {Name: "b", Outcome: EntryUnchanged}, {Name: "c", Outcome: EntrySkipped},
		{Name: "d", Outcome: EntryRolledBack}, {Name: "e", Outcome: EntryFailed}, {Name: "f", Outcome: EntryPurged},
	}}
	if diff := cmp.Diff([]string{"a", "b", "d"}, rep.Running()); diff != "" {
		t.Errorf("Running() (-want +got):\n%s", diff)
	}
	if !rep.Changed() {
		t.Errorf("Changed() = false, want true")
	}
	quiet := PassReport{Machines: []MachineResult{{Name: "b", Outcome: EntryUnchanged}, {Name: "c", Outcome: EntrySkipped}}}
	if quiet.Changed() || quiet.Failed() {
		t.Errorf("unchanged report: Changed() = %v, Failed() = %v, want false, false", quiet.Changed(), quiet.Failed())
	}
}

// TestReconcileMatchersCompiledOnce checks that a new serial whose entries
// keep their matchers reuses the compiled ones (planning a large spec is
// mostly compiling), and that a changed matcher is compiled anew.
func TestReconcileMatchersCompiledOnce(t *testing.T) {
	f := newFixture(t, nil)
	f.r.Reconcile(t.Context(), webByRoleDB(f), ReconcileOptions{})
	first := f.r.plan.entries[0].matcher
	if first == nil || first.String() != "facts.role == 'web'" {
		t.Fatalf("web's matcher = %v, want facts.role == 'web'", first)
	}
	f.r.Reconcile(t.Context(), f.seal(2, f.entry("web", "2", "facts.role == 'web'"), f.entry("db", "1", "")), ReconcileOptions{})
	if got := f.r.plan.entries[0].matcher; got != first {
		t.Errorf("serial 2 with web's matcher unchanged compiled it again")
	}
	f.r.Reconcile(t.Context(), f.seal(3, f.entry("web", "3", "facts.role == 'api'"), f.entry("db", "1", "")), ReconcileOptions{})
	if got := f.r.plan.entries[0].matcher; got == first || got.String() != "facts.role == 'api'" {
		t.Errorf("serial 3 with a new matcher planned %v, want facts.role == 'api' compiled anew", got)
	}
}
