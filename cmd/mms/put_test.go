package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// putServer starts a server with the spec bucket and returns its URL and
// the status bucket (created).
func putServer(t *testing.T) (string, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"}); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), createStatusBucket(t, js)
}

func putDoc(t *testing.T, kv jetstream.KeyValue, d nodestatus.Document) {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), nodestatus.Key(d.Identity), b); err != nil {
		t.Fatal(err)
	}
}

// keyID returns the key id of the public key in file pub.
func keyID(t *testing.T, pub string) string {
	t.Helper()
	k, err := packer.ParsePublicKey(strings.TrimSpace(readFile(t, pub)))
	if err != nil {
		t.Fatal(err)
	}
	return packer.KeyID(k)
}

func TestPutRefusesExpired(t *testing.T) {
	url, _ := putServer(t)
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	expired := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "5", "--expires", "1ns").stdout
	r := mms(t, expired, "put", "--server", url)
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to put serial 5: it expired at ") || !strings.Contains(r.stderr, "every agent rejects an expired spec") {
		t.Errorf("put of an expired spec = exit %d, stderr %q; want 1 and why", r.code, r.stderr)
	}
	fresh := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "6", "--expires", "1h").stdout
	mmsOK(t, fresh, "put", "--server", url)
}

func TestPutVerifies(t *testing.T) {
	url, _ := putServer(t)
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	_, otherPub := newKeyPair(t, dir, "other")
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	env := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "5").stdout

	r := mms(t, env, "put", "--server", url, "--trusted-keys", otherPub)
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to put: ") || !strings.Contains(r.stderr, "not trusted") {
		t.Errorf("put verified with a key that did not sign = exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
	r = mms(t, env, "put", "--server", url, "--public-key", strings.TrimSpace(readFile(t, pub)), "--trusted-keys", otherPub, "--threshold", "2")
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to put: ") {
		t.Errorf("put verified with threshold 2 and one signature = exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
	r = mmsOK(t, env, "put", "--server", url, "--public-key", strings.TrimSpace(readFile(t, pub)))
	if want := "verified: signed by " + keyID(t, pub) + " (1 of 1 required)"; !strings.Contains(r.stderr, want) || !strings.Contains(r.stdout, "serial 5") {
		t.Errorf("put with the signing key: stdout %q, stderr %q; want %q and the write", r.stdout, r.stderr, want)
	}
}

// Without keys, put reads the agents' published trust: it refuses a spec
// every reporting agent will reject (no agent trusts the signing key),
// writing nothing, unless --force; it warns when some agents will.
func TestPutWarnsUntrusted(t *testing.T) {
	url, kv := putServer(t)
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	_, otherPub := newKeyPair(t, dir, "other")
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	now := time.Now().UTC()
	agent := func(identity string, trust nodestatus.Trust) nodestatus.Document {
		d := statusDocument(identity, 1, now)
		d.Trust = &trust
		return d
	}
	ops, other := keyID(t, pub), keyID(t, otherPub)
	putDoc(t, kv, agent("web1", nodestatus.Trust{KeyIDs: []string{other}, Threshold: 1}))
	putDoc(t, kv, agent("web2", nodestatus.Trust{KeyIDs: []string{other}, Threshold: 1}))

	env10 := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "10").stdout
	r := mms(t, env10, "put", "--server", url)
	why := fmt.Sprintf("no reporting agent trusts a key this spec claims to be signed by (%s); the 2 agents trust %s: all will reject it", ops, other)
	if want := "mms: refusing to put: " + why + "; sign it so that they accept it, or pass --force to publish it anyway\n"; r.code != 1 || r.stdout != "" || r.stderr != want {
		t.Errorf("put signed by a key no agent trusts: exit %d, stdout %q, stderr %q; want 1 and %q", r.code, r.stdout, r.stderr, want)
	}
	if r := mms(t, "", "show", "--server", url); r.code == 0 {
		t.Errorf("the refused put wrote a spec:\n%s", r.stdout)
	}
	r = mmsOK(t, env10, "put", "--server", url, "--force")
	if want := "warning: " + why + "; publishing it anyway (--force)\n"; r.stderr != want || !strings.Contains(r.stdout, "serial 10") {
		t.Errorf("put --force signed by a key no agent trusts: stdout %q, stderr %q; want the write and %q", r.stdout, r.stderr, want)
	}

	putDoc(t, kv, agent("web2", nodestatus.Trust{KeyIDs: []string{other, ops}, Threshold: 1}))
	putDoc(t, kv, agent("web3", nodestatus.Trust{KeyIDs: []string{other, ops}, Threshold: 2}))
	putDoc(t, kv, agent("web4", nodestatus.Trust{Unsigned: true}))
	stopped := agent("web5", nodestatus.Trust{KeyIDs: []string{other}, Threshold: 1})
	stopped.StoppedAt = now
	putDoc(t, kv, stopped)
	r = mmsOK(t, mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "11").stdout, "put", "--server", url)
	want := fmt.Sprintf("warning: 2 of 4 reporting agents will reject this spec (signed by %s): web1 (trusts none of its signing keys), web3 (needs 2 signatures from its keys, the spec has 1)", ops)
	if !strings.Contains(r.stderr, want) {
		t.Errorf("put some agents reject: stderr %q, want %q", r.stderr, want)
	}

	v1 := mmsOK(t, "", "pack", machines, "--key-file", key, "--format", "v1").stdout
	putDoc(t, kv, agent("web2", nodestatus.Trust{KeyIDs: []string{ops}, Threshold: 1, AllowV1: true}))
	r = mmsOK(t, v1, "put", "--server", url)
	if want := "web1 (refuses v1 specs), web2 (runs a v2 spec, after which it refuses v1), web3 (refuses v1 specs)"; !strings.Contains(r.stderr, want) {
		t.Errorf("put v1: stderr %q, want %q", r.stderr, want)
	}

	putDoc(t, kv, agent("web1", nodestatus.Trust{KeyIDs: []string{ops}, Threshold: 1}))
	putDoc(t, kv, agent("web3", nodestatus.Trust{KeyIDs: []string{ops}, Threshold: 1}))
	r = mmsOK(t, mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "12").stdout, "put", "--server", url)
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("put every agent accepts: stderr %q, want no warning", r.stderr)
	}
}

// put --wait follows the status documents: it skips agents that were
// stale when it started, prints progress as agents apply, and ends when
// every agent applied or failed, naming the failures; it times out naming
// who is missing; it refuses to wait for nobody.
func TestPutWaitDocuments(t *testing.T) {
	url, kv := putServer(t)
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	ops := keyID(t, pub)
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	pack := func(serial string) (string, *packer.Opened) {
		env := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", serial).stdout
		o, err := packer.Inspect([]byte(strings.TrimSpace(env)))
		if err != nil {
			t.Fatal(err)
		}
		return env, o
	}

	env, _ := pack("1")
	if r := mms(t, env, "put", "--server", url, "--wait", "10s"); r.code != 2 || !strings.Contains(r.stderr, "nothing to wait for: no running agent reports its status in MACHINES_STATUS") {
		t.Errorf("put --wait without agents = exit %d, stderr %q; want 2 and why", r.code, r.stderr)
	}

	now := time.Now().UTC()
	putDoc(t, kv, trusting(statusDocument("web1", 1, now), ops))
	putDoc(t, kv, trusting(statusDocument("web2", 1, now), ops))
	putDoc(t, kv, trusting(statusDocument("web3", 1, now.Add(-time.Hour)), ops))

	env, _ = pack("2")
	r := mms(t, env, "put", "--server", url, "--wait", "1s")
	want := "mms: timed out after 1s waiting for serial 2: 0 of 2 agents applied it:\n  web1: not yet: runs serial 1\n  web2: not yet: runs serial 1\n"
	if r.code != 3 || !strings.HasSuffix(r.stderr, want) {
		t.Errorf("put --wait with nobody applying = exit %d, stderr %q; want 3 (timed out) and %q", r.code, r.stderr, want)
	}

	env, next := pack("3")
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"put", "--server", url, "--wait", "30s"}, strings.NewReader(env), &out, &errOut)
	}()
	waitFor(t, &errOut, "serial 3: 0/2 applied")
	applied := trusting(statusDocument("web1", 3, time.Now().UTC()), ops)
	applied.Applied.Digest, applied.Seen.Digest = next.Digest, next.Digest
	putDoc(t, kv, applied)
	waitFor(t, &errOut, "serial 3: 1/2 applied; pending: web2\n")
	failing := trusting(statusDocument("web2", 3, time.Now().UTC()), ops)
	failing.Applied.Digest, failing.Seen.Digest = next.Digest, next.Digest
	failing.Entries = []nodestatus.Entry{{Name: "web", Outcome: "failed", Reason: "install: sha256 mismatch"}}
	putDoc(t, kv, failing)
	code := exitCode(t, done, "every agent applied or failed")
	if code != 2 || !strings.HasSuffix(errOut.String(), "mms: serial 3 failed on 1 of 2 agents:\n  web2: web failed: install: sha256 mismatch\n") {
		t.Errorf("put --wait with a failed entry = exit %d, stderr %q; want 2 naming web2 and the entry", code, errOut.String())
	}
	for _, w := range []string{"not waiting for 1 stale agent: web3\n", "serial 3: 1/2 applied, 1 failed: web2: web failed: install: sha256 mismatch\n"} {
		if !strings.Contains(errOut.String(), w) {
			t.Errorf("put --wait stderr = %q, want it to contain %q", errOut.String(), w)
		}
	}
	if !strings.Contains(out.String(), "put MACHINES/machines revision") {
		t.Errorf("put --wait stdout = %q, want the write reported", out.String())
	}
}

// put --wait outlives --timeout: the timeout bounds the connect and the
// write, not the wait (the connection used to close when it ran out, and
// the wait ended with "the watch of MACHINES_STATUS ended").
func TestPutWaitOutlivesTimeout(t *testing.T) {
	url, kv := putServer(t)
	dir := t.TempDir()
	key, pub := newKeyPair(t, dir, "ops")
	ops := keyID(t, pub)
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	putDoc(t, kv, trusting(statusDocument("web1", 1, time.Now().UTC()), ops))
	env := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "2").stdout
	next, err := packer.Inspect([]byte(strings.TrimSpace(env)))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- run(t.Context(), []string{"put", "--server", url, "--wait", "60s", "--timeout", "1s"}, strings.NewReader(env), &out, &errOut)
	}()
	waitFor(t, &errOut, "serial 2: 0/1 applied; pending: web1\n")
	natstest.Eventually(t, 10*time.Second, func() error {
		if time.Since(start) < 2*time.Second {
			return errors.New("--timeout has not run out yet")
		}
		return nil
	})
	applied := trusting(statusDocument("web1", 2, time.Now().UTC()), ops)
	applied.Applied.Digest, applied.Seen.Digest = next.Digest, next.Digest
	putDoc(t, kv, applied)
	code := exitCode(t, done, "the agent applied the spec")
	if code != 0 || !strings.Contains(out.String(), "serial 2 applied by the one reporting agent\n") {
		t.Errorf("put --wait past --timeout = exit %d, stdout %q, stderr %q; want 0 and the agent applied", code, out.String(), errOut.String())
	}
}

// TestPutSameSerial: two packs in one second take the same serial. The
// same machines signed again with another key replace the spec, saying
// so (put used to answer "already holds this spec" and write nothing);
// other machines under that serial are refused naming the next serial;
// the same bytes are not written again.
func TestPutSameSerial(t *testing.T) {
	url, _ := putServer(t)
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	other, _ := newKeyPair(t, dir, "other")
	// Packed in one second: the same serial and issue time.
	issued := time.Now().UTC().Truncate(time.Second)
	pack := func(key string, names ...string) string {
		ms, err := spec.ParseMachines([]byte(machinesJSON(names...)))
		if err != nil {
			t.Fatal(err)
		}
		env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 10, IssuedAt: issued, Machines: ms}, readPrivateKey(t, key))
		if err != nil {
			t.Fatal(err)
		}
		return string(env)
	}
	mmsOK(t, pack(other, "web"), "put", "--server", url)

	r := mmsOK(t, pack(key, "web"), "put", "--server", url)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "put MACHINES/machines revision 2: v2 spec serial 10, 1 machine, at ") ||
		lines[1] != "revision 1 held the same spec (serial 10, the same machines and times) with other signatures: agents that applied it keep running it, agents that rejected it check these signatures" {
		t.Errorf("put of the same spec signed with another key: stdout %q, want it written, saying so", r.stdout)
	}
	if r := mmsOK(t, pack(key, "web"), "put", "--server", url); r.stdout != "MACHINES/machines already holds this spec (revision 2, v2 serial 10) on "+url+"; nothing to do\n" {
		t.Errorf("put of the same bytes again: stdout %q", r.stdout)
	}

	r = mms(t, pack(key, "web", "db"), "put", "--server", url)
	if want := "mms: refusing to put serial 10: MACHINES/machines holds another spec with the same serial (both packed in the same second?), and agents refuse a second spec with a serial they have seen; pack again with --serial 11\n"; r.code != 1 || r.stderr != want {
		t.Errorf("put of other machines with the same serial: exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
}

// trusting returns d with the trust of an agent that accepts what the
// key with id signs.
func trusting(d nodestatus.Document, id string) nodestatus.Document {
	d.Trust = &nodestatus.Trust{KeyIDs: []string{id}, Threshold: 1}
	return d
}

// exitCode waits for the exit code of a command run in the background,
// which should end now that what happened.
func exitCode(t *testing.T, done <-chan int, what string) int {
	t.Helper()
	var code int
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case code = <-done:
			return nil
		default:
			return errors.New("the command still runs after " + what)
		}
	})
	return code
}
