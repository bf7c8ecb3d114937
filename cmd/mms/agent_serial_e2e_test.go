package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestAgentSerialLockoutRecovery is issue 18.1 end to end with real agents:
// an agent refuses a spec with serial 2^64-1 and keeps running; an agent
// whose ledger already holds 2^64-1 (as an agent without the ceiling left
// it) ignores normal specs, is recovered by `mms pack --reset-history | mms
// put`, and afterwards refuses the bad spec when it is replayed.
func TestAgentSerialLockoutRecovery(t *testing.T) {
	f := newOperatorFixture(t)
	dir, keyFile, state, repo, sign := f.dir, f.keyFile, f.state, f.repo, f.sign
	a := startTestAgent(t, f.pub, state)
	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	good := packPut(t, sign, a.login.flags())
	a.waitSpecEvent(t, good, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryInstalled) })

	// A validly signed spec with serial 2^64-1, put with the nats CLI.
	key, err := packer.ParsePrivateKey(readFile(t, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	v9 := repo.publish(t, "web", "9.0.0")
	bad, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: math.MaxUint64, IssuedAt: time.Now().UTC(), Machines: []spec.Machine{v9}}, key)
	if err != nil {
		t.Fatal(err)
	}
	a.rawPut(t, bad)
	a.waitSpecEvent(t, math.MaxUint64, rejectedAs(manager.RejectSerialAhead, "serial 18446744073709551615 is above"))
	if err := installedVersion(t, state, "1.0.0"); err != nil {
		t.Fatalf("after the refused spec: %v", err)
	}
	ledger := packer.NewFileLedger(filepath.Join(state, mmsmanager.MachineName, manager.LedgerFile))
	if last, _, err := ledger.Last(); err != nil || last.Serial != good {
		t.Fatalf("ledger after the refused spec = %+v, %v; want serial %d", last, err, good)
	}
	a.shutdown(t)

	// An agent without the ceiling had accepted it an hour ago: the
	// ledger holds 2^64-1.
	in, err := packer.Inspect(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(state, mmsmanager.MachineName, manager.LedgerFile)); err != nil {
		t.Fatal(err)
	}
	if err := ledger.Accept(packer.Record{Serial: math.MaxUint64, Digest: in.Digest, Format: packer.FormatV2, Envelope: bad, AcceptedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	a = startTestAgent(t, f.pub, state)
	a.waitSpecEvent(t, math.MaxUint64, func(ev specEvent) error {
		if ev.Rejected != "" {
			return fmt.Errorf("the recorded spec was %q: %s; want it kept as the running spec", ev.Rejected, ev.Reason)
		}
		return nil
	})

	// A normal spec: mms put refuses with the way out; the nats CLI puts
	// it and the locked agent ignores it.
	v2 := repo.publish(t, "web", "2.0.0")
	writeMachines(t, dir, v2)
	normal := mmsOK(t, "", append([]string{"pack", "machines.json"}, sign...)...).stdout
	if r := mms(t, normal, append([]string{"put"}, a.login.flags()...)...); r.code == 0 || !strings.Contains(r.stderr, "re-pack with --reset-history") {
		t.Fatalf("mms put over serial 2^64-1: exit %d, stderr %q; want the --reset-history hint", r.code, r.stderr)
	}
	normalIn, err := packer.Inspect([]byte(strings.TrimSpace(normal)))
	if err != nil {
		t.Fatal(err)
	}
	a.rawPut(t, []byte(strings.TrimSpace(normal)))
	a.waitSpecEvent(t, normalIn.Spec.Serial, rejectedAs(manager.RejectReplayed, "< 18446744073709551615"))

	// The recovery: a reset spec, with the commands the hint names.
	serial := packPut(t, append(sign, "--reset-history", "--serial", strconv.FormatUint(normalIn.Spec.Serial+1, 10)), a.login.flags())
	a.waitSpecEvent(t, serial, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryUpdated) })
	if err := installedVersion(t, state, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, a.errOut, "SPEC HISTORY RESET: a signed reset spec replaced", "forgotten_serial=18446744073709551615")

	// The bad spec replayed: refused, 2.0.0 keeps running.
	a.rawPut(t, bad)
	a.waitSpecEvent(t, math.MaxUint64, rejectedAs(manager.RejectSerialAhead, "is above"))
	if err := installedVersion(t, state, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	a.shutdown(t)
}

// TestAgentResetSpecHistory is the operator's local way back from "a v2
// spec was accepted, so v1 specs are ignored" (issue 16): restarting the
// agent with --reset-spec-history SERIAL forgets that spec, loudly, and the
// v1 spec in the bucket is installed; the same flag on the next start does
// nothing.
func TestAgentResetSpecHistory(t *testing.T) {
	f := newOperatorFixture(t)
	dir, keyFile, pub, state, repo := f.dir, f.keyFile, f.pub, f.state, f.repo
	a := startTestAgent(t, pub, state, "--allow-legacy-spec")
	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	serial := packPut(t, []string{"--key-file", keyFile, "--allow-http"}, a.login.flags())
	a.waitSpecEvent(t, serial, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryInstalled) })

	// Choria tooling publishes a v1 spec: ignored after the v2 one.
	v2 := repo.publish(t, "web", "2.0.0")
	v2.Size = 0 // v1 carries no size
	writeMachines(t, dir, v2)
	v1 := mmsOK(t, "", "pack", "machines.json", "--key-file", keyFile, "--allow-http", "--format", "v1").stdout
	a.rawPut(t, []byte(strings.TrimSpace(v1)))
	a.waitSpecEvent(t, 0, rejectedAs(manager.RejectReplayed, "v1 specs have no serial"))
	a.shutdown(t)

	// A wrong serial changes nothing.
	a = startTestAgent(t, pub, state, "--allow-legacy-spec", "--reset-spec-history", "7")
	waitFor(t, a.errOut, "--reset-spec-history did nothing", "the last accepted spec has serial "+strconv.FormatUint(serial, 10)+", not 7")
	a.waitSpecEvent(t, 0, rejectedAs(manager.RejectReplayed, "v1 specs have no serial"))
	a.shutdown(t)

	a = startTestAgent(t, pub, state, "--allow-legacy-spec", "--reset-spec-history", strconv.FormatUint(serial, 10))
	waitFor(t, a.errOut, "SPEC HISTORY RESET by the operator (--reset-spec-history)", "forgotten_serial="+strconv.FormatUint(serial, 10))
	a.waitSpecEvent(t, 0, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryUpdated) })
	if err := installedVersion(t, state, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	a.shutdown(t)

	// The flag left in place: the history now holds the v1 spec.
	a = startTestAgent(t, pub, state, "--allow-legacy-spec", "--reset-spec-history", strconv.FormatUint(serial, 10))
	waitFor(t, a.errOut, "--reset-spec-history did nothing", "the last accepted spec has serial 0, not "+strconv.FormatUint(serial, 10))
	if strings.Contains(a.errOut.String(), "SPEC HISTORY RESET") {
		t.Errorf("a second start with the same flag reset the history again:\n%s", a.errOut.String())
	}
	a.shutdown(t)
}
