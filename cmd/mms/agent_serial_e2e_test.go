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

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/nodestatus"
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

	// The flag left in place: the node did that reset already.
	a = startTestAgent(t, pub, state, "--allow-legacy-spec", "--reset-spec-history", strconv.FormatUint(serial, 10))
	waitFor(t, a.errOut, "--reset-spec-history did nothing: this node already reset that serial", "this node already reset that serial: serial "+strconv.FormatUint(serial, 10)+" at ")
	if strings.Contains(a.errOut.String(), "SPEC HISTORY RESET") {
		t.Errorf("a second start with the same flag reset the history again:\n%s", a.errOut.String())
	}
	a.shutdown(t)
}

// TestResetSpecHistoryHappensOnce is issue 23's fifth attack, with real
// agent processes: the operator restarts a node with --reset-spec-history
// S and leaves the flag in its unit file; the node re-accepts the spec it
// was running (serial S again). Someone who can write the spec key, but
// cannot sign, puts back an older signed spec and waits for a restart. The
// reset does not happen again, so the older spec is ignored and the node
// keeps 2.0.0; a start without the flag drops the record of the reset.
func TestResetSpecHistoryHappensOnce(t *testing.T) {
	f := newOperatorFixture(t)
	sign := []string{"--key-file", f.keyFile, "--allow-http"}
	a := startTestAgentProcess(t, f.pub, f.state)
	serial := uint64(time.Now().Unix())
	writeMachines(t, f.dir, f.repo.publish(t, "web", "1.0.0"))
	old := mmsOK(t, "", append([]string{"pack", "machines.json", "--serial", fmt.Sprint(serial)}, sign...)...).stdout
	mmsOK(t, old, append([]string{"put"}, a.login.flags()...)...)
	a.waitSpecEvent(t, serial, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryInstalled) })
	writeMachines(t, f.dir, f.repo.publish(t, "web", "2.0.0"))
	current := packPut(t, append(sign, "--serial", fmt.Sprint(serial+1)), a.login.flags())
	a.waitSpecEvent(t, current, func(ev specEvent) error { return resultFor(ev.Results, "web", manager.EntryUpdated) })
	a.shutdown(t)

	ledger := packer.NewFileLedger(filepath.Join(f.state, mmsmanager.MachineName, manager.LedgerFile))
	flag := []string{"--reset-spec-history", fmt.Sprint(current)}
	a = startTestAgentProcess(t, f.pub, f.state, flag...)
	waitFor(t, a.errOut, "SPEC HISTORY RESET by the operator (--reset-spec-history)", fmt.Sprintf("forgotten_serial=%d", current))
	natstest.Eventually(t, e2eTimeout, func() error { // the node takes the spec in the key again
		if last, ok, err := ledger.Last(); err != nil || !ok || last.Serial != current {
			return fmt.Errorf("ledger = %+v, %v, %v; want serial %d again", last, ok, err, current)
		}
		return nil
	})
	// The attacker puts the older signed spec back, and waits.
	a.rawPut(t, []byte(strings.TrimSpace(old)))
	a.waitSpecEvent(t, serial, rejectedAs(manager.RejectReplayed, fmt.Sprintf("ignored older spec (serial %d < %d)", serial, current)))
	a.shutdown(t)

	restart := time.Now()
	a = startTestAgentProcess(t, f.pub, f.state, flag...)
	pollStatus(t, a.login.flags(), "web1", func(d *nodestatus.Document) error {
		if d.StartedAt.Before(restart.Add(-time.Second)) || d.Seen == nil || d.Seen.Serial != serial || d.Seen.Outcome != nodestatus.SeenIgnoredOlder {
			return fmt.Errorf("web1 started %v, saw %+v; want serial %d ignored-older after the restart", d.StartedAt, d.Seen, serial)
		}
		return nil
	})
	waitFor(t, a.errOut, "--reset-spec-history did nothing: this node already reset that serial (a reset happens once)",
		fmt.Sprintf("this node already reset that serial: serial %d at ", current))
	if n := strings.Count(a.errOut.String(), "SPEC HISTORY RESET"); n != 0 {
		t.Errorf("the flag left in place reset the history again:\n%s", a.errOut)
	}
	if err := installedVersion(t, f.state, "2.0.0"); err != nil {
		t.Errorf("after the replay: %v", err)
	}
	a.shutdown(t)

	a = startTestAgentProcess(t, f.pub, f.state)
	waitFor(t, a.errOut, "--reset-spec-history is no longer set: its record is dropped, so the same serial may be reset again", fmt.Sprintf("serial=%d", current))
	a.shutdown(t)
}

// TestPackResetHistoryBelowNowWarns: a reset spec with a serial below the
// current time lowers the serial of the nodes it resets, which then accept
// replays of every spec signed since; pack says so.
func TestPackResetHistoryBelowNowWarns(t *testing.T) {
	dir := t.TempDir()
	keyFile, _ := newKeyPair(t, dir, "ops")
	machines := writeMachines(t, dir)
	low := uint64(time.Now().Unix()) - 86400
	r := mmsOK(t, "", "pack", machines, "--key-file", keyFile, "--reset-history", "--serial", fmt.Sprint(low))
	want := fmt.Sprintf("--reset-history with --serial %d, below the current time (", low)
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "so they accept every spec signed with a higher serial, older specs signed since then included") {
		t.Errorf("mms pack --reset-history --serial %d: stderr %q, want %q", low, r.stderr, want)
	}
	if r := mmsOK(t, "", "pack", machines, "--key-file", keyFile, "--reset-history"); strings.Contains(r.stderr, "--reset-history with --serial") {
		t.Errorf("mms pack --reset-history (serial now) warned: %s", r.stderr)
	}
}

// TestAgentRefusalsNameTheFlag: an agent that refuses a v1 spec, or an
// entry's http:// source, says in its log and in the manager's event which
// of its flags accepts it.
func TestAgentRefusalsNameTheFlag(t *testing.T) {
	f := newOperatorFixture(t)
	a := startTestAgent(t, f.pub, f.state, "--allow-http=false")
	web := f.repo.publish(t, "web", "1.0.0")
	web.Size = 0 // v1 carries no size
	writeMachines(t, f.dir, web)
	v1 := mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--allow-http", "--format", "v1").stdout
	a.rawPut(t, []byte(strings.TrimSpace(v1)))
	const legacy = "v1 is not allowed; to accept v1 specs anyway, set mms agent --allow-legacy-spec"
	a.waitSpecEvent(t, 0, rejectedAs(manager.RejectLegacy, legacy))
	waitFor(t, a.errOut, "spec rejected; the running machines stay as they are", legacy)

	serial := packPut(t, f.sign, a.login.flags())
	const http = "source: plain http:// is not allowed; use https:// or nats://, or allow http with mms agent --allow-http (the checksums still pin the bytes)"
	a.waitSpecEvent(t, serial, func(ev specEvent) error {
		if err := resultFor(ev.Results, "web", manager.EntryFailed); err != nil {
			return err
		}
		if !strings.Contains(ev.Results[0].Reason, http) {
			return fmt.Errorf("reason %q does not name the flag", ev.Results[0].Reason)
		}
		return nil
	})
	waitFor(t, a.errOut, "spec entry is invalid: it is not installed (a copy installed before keeps running)", http)
	a.shutdown(t)
}
