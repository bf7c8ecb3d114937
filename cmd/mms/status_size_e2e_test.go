package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestLargeSpecKeepsStatusWithinBounds is issue 23's third finding, with a
// real agent process: a valid spec near the 1 MiB envelope limit whose
// entries (long matchers that skip this node) would make the status
// document larger than the server takes. `mms pack` warns; the agent
// trims the document to its bound and says so in it, instead of failing
// every write (on main the node stays behind and stale for as long as the
// spec stays).
func TestLargeSpecKeepsStatusWithinBounds(t *testing.T) {
	f := newOperatorFixture(t)
	args := agentArgs(t, f.state, "web1")
	for i, a := range args {
		if a == "--public-key" {
			args[i+1] = strings.TrimSpace(readFile(t, f.pub))
		}
	}
	agent := startMMS(t, nil, args...)
	agent.waitStderr(t, "agent started")
	conn := loginOf(t, f.state).flags()

	// 850 entries with 600-byte matchers that never select web1: about
	// 960 kB signed, a status document of about 1.15 MB untrimmed.
	pad := strings.Repeat("x", 560)
	var entries []spec.Machine
	for i := range 850 {
		e := spec.Machine{Name: fmt.Sprintf("m%04d", i), Source: "https://archives.example.net/m.tar.gz",
			Checksum: strings.Repeat("a", 64), VerifyChecksum: strings.Repeat("b", 64),
			Match: fmt.Sprintf(`identity("^nobody-%s$")`, pad)}
		entries = append(entries, e)
	}
	writeMachines(t, f.dir, entries...)
	packed := mms(t, "", "pack", "machines.json", "--key-file", f.keyFile)
	if packed.code != 0 {
		t.Fatalf("mms pack = exit %d: %s", packed.code, packed.stderr)
	}
	if len(packed.stdout) > packer.MaxEnvelopeSize || len(packed.stdout) < 900_000 {
		t.Fatalf("the envelope is %d bytes; want close to %d", len(packed.stdout), packer.MaxEnvelopeSize)
	}
	if want := "the spec's 850 entries make a node's status document about"; !strings.Contains(packed.stderr, want) ||
		!strings.Contains(packed.stderr, fmt.Sprintf("near the %d bytes an agent writes", nodestatus.MaxWrittenSize)) {
		t.Errorf("mms pack's warnings:\n%s\nwant %q", packed.stderr, want)
	}
	put := mms(t, packed.stdout, append([]string{"put"}, conn...)...)
	if put.code != 0 {
		t.Fatalf("mms put = exit %d: %s", put.code, put.stderr)
	}
	serial := putSerial.FindStringSubmatch(put.stdout)[1]

	doc := pollStatus(t, conn, "web1", func(d *nodestatus.Document) error {
		if fmt.Sprint(d.AppliedSerial()) != serial {
			return fmt.Errorf("web1 applied %+v, want serial %s", d.Applied, serial)
		}
		return nil
	})
	want := fmt.Sprintf("this document was trimmed to fit %d bytes: reasons, matchers and errors cut to 256 bytes; matchers and machine paths left out", nodestatus.MaxWrittenSize)
	if doc.Trimmed != want {
		t.Errorf("trimmed = %q, want %q", doc.Trimmed, want)
	}
	if code, msg := statusCheck(t, conn); code != 0 || strings.Contains(msg, "stale") {
		t.Errorf("mms status --check = exit %d: %s", code, msg)
	}
	if node := mmsOK(t, "", append([]string{"status", "web1"}, conn...)...).stdout; !strings.Contains(node, "Applied:") {
		t.Errorf("mms status web1:\n%s", node)
	}
	if strings.Contains(agent.stderr.String(), "status write failed") {
		t.Errorf("the agent failed to write its status:\n%s", agent.stderr)
	}
}
