package manager

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzReconcileEnvelope feeds arbitrary envelope bytes to a node running
// web@1 and db@1. Whatever the bytes, Reconcile must not panic, and a
// rejected envelope must change nothing: the same machines running, the
// same install records, nothing downloaded. (Random bytes cannot carry a
// valid signature, so in practice every input the fuzzer invents is
// rejected; seeds include valid envelopes so mutations start near them.)
func FuzzReconcileEnvelope(f *testing.F) {
	fx := newFixture(f, nil)
	f.Add(webDB(fx))
	rep := fx.r.Reconcile(f.Context(), webDB(fx), ReconcileOptions{})
	if diff := cmp.Diff([]string{"web installed", "db installed"}, outcomes(rep)); diff != "" {
		f.Fatalf("setup (-want +got):\n%s", diff)
	}
	for _, seed := range [][]byte{
		fx.seal(2),
		fx.seal(3, fx.entry("web", "2", "identity('^web')")),
		corruptSignature(f, fx.seal(4)),
		[]byte(`{"machines":"W10=","signature":""}`),
		[]byte(`{"payloadType":"x","payload":"","signatures":[]}`),
		[]byte("null"), []byte(""), []byte("  {}  "),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, envelope []byte) {
		running, installed, downloads := fx.running(), fx.inst.names(), fx.inst.downloads
		rep := fx.r.Reconcile(t.Context(), envelope, ReconcileOptions{})
		if rep.Rejected == "" {
			if bytes.Contains(envelope, []byte(`"signatures":[]`)) {
				t.Fatalf("accepted an unsigned envelope %q", envelope)
			}
			return // a valid, signed spec: acting on it is right
		}
		if rep.Rejected != RejectReplayed && rep.Err == nil {
			t.Fatalf("rejection %q without an error", rep.Rejected)
		}
		if len(rep.Machines) != 0 {
			t.Fatalf("rejected spec (%s) has results %v", rep.Rejected, outcomes(rep))
		}
		if got := fx.running(); !cmp.Equal(got, running) {
			t.Fatalf("rejected spec (%s) changed what runs: %v → %v", rep.Rejected, running, got)
		}
		if got := fx.inst.names(); !cmp.Equal(got, installed) || fx.inst.downloads != downloads {
			t.Fatalf("rejected spec (%s) changed what is installed: %v → %v", rep.Rejected, installed, got)
		}
	})
}
