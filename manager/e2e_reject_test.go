package manager_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// testRejections puts specs the node must refuse and checks that each is
// reported with its reason while the machines directory and the state
// directory stay byte-identical, with no temporaries, and alpha 2.0.0
// keeps running.
func testRejections(t *testing.T, n *e2eNode, records string) {
	strangerPub, stranger, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	next := n.serial + 1
	evil := spec.Machine{
		Name: "evil", Source: n.files.srv.URL + "/evil.tar.gz",
		Checksum: strings.Repeat("e", 64), VerifyChecksum: strings.Repeat("f", 64),
	}
	tests := []struct {
		name     string
		envelope []byte
		reject   manager.Rejection
		outcome  string
		reason   string // the event's reason starts with it
	}{
		{
			name:     "forged signature",
			envelope: forge(t, sealWith(t, specAt(next, now, time.Time{}), n.priv), sealWith(t, specAt(next, now, time.Time{}, evil), n.priv)),
			reject:   manager.RejectBadSignature, outcome: "failure",
			reason: "open spec: spec rejected: 0/1 valid signatures (keyid " + packer.KeyID(n.priv.Public().(ed25519.PublicKey)) + ": signature does not verify)",
		},
		{
			name:     "replayed older serial",
			envelope: sealWith(t, specAt(n.serial-1, now, time.Time{}), n.priv),
			reject:   manager.RejectReplayed, outcome: "report",
			reason: fmt.Sprintf("open spec: ignored older spec (serial %d < %d)", n.serial-1, n.serial),
		},
		{
			name:     "expired",
			envelope: sealWith(t, specAt(next, now.Add(-2*time.Hour), now.Add(-time.Hour)), n.priv),
			reject:   manager.RejectExpired, outcome: "failure",
			reason: "open spec: spec expired 1h0m",
		},
		{
			name:     "malformed bytes",
			envelope: []byte("\x00not a spec envelope{"),
			reject:   manager.RejectMalformed, outcome: "failure",
			reason: "open spec: malformed spec envelope: envelope is not a JSON object",
		},
		{
			name:     "untrusted key",
			envelope: sealWith(t, specAt(next, now, time.Time{}), stranger),
			reject:   manager.RejectUnknownKey, outcome: "failure",
			reason: "open spec: spec rejected: 0/1 valid signatures (keyid " + packer.KeyID(strangerPub) + " not trusted)",
		},
		{
			name:     "unsigned",
			envelope: sealWith(t, specAt(next, now, time.Time{})),
			reject:   manager.RejectUnsigned, outcome: "failure",
			reason: "open spec: spec rejected: 0/1 valid signatures (envelope is unsigned)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			machines, state := treetest.Snapshot(t, n.machines), treetest.Snapshot(t, n.state)
			mark := n.events.mark()
			n.put(t, tt.envelope)
			ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool { return e.State.Rejected == string(tt.reject) })
			if ev.Info.Outcome != tt.outcome {
				t.Errorf("machines event outcome = %q, want %q", ev.Info.Outcome, tt.outcome)
			}
			if !strings.HasPrefix(ev.State.Reason, tt.reason) {
				t.Errorf("machines event reason = %q, want %q", ev.State.Reason, tt.reason)
			}
			if len(ev.State.Results) != 0 || len(ev.State.Machines) != 1 || ev.State.Machines[0] != "alpha" {
				t.Errorf("machines event results %v machines %v, want no results and alpha still running", ev.outcomes(), ev.State.Machines)
			}
			treetest.AssertSame(t, n.machines, machines)
			treetest.AssertSame(t, n.state, state)
			assertNoTemporaries(t, n.machines, records)
			n.waitRunning(t, "alpha", "2.0.0", "running")
		})
	}
}

// forge returns signed with its payload replaced by other's: the
// signatures name a trusted key but no longer verify.
func forge(t testing.TB, signed, other []byte) []byte {
	t.Helper()
	var a, b map[string]any
	if err := json.Unmarshal(signed, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(other, &b); err != nil {
		t.Fatal(err)
	}
	a["payload"] = b["payload"]
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
