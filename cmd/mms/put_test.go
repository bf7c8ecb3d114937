package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// Without keys, put warns from the agents' published trust: when no agent
// trusts the signing key, and when some agents will reject the spec.
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

	r := mmsOK(t, mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "10").stdout, "put", "--server", url)
	want := fmt.Sprintf("warning: no reporting agent trusts a key this spec claims to be signed by (%s); the 2 agents trust %s: all will reject it", ops, other)
	if !strings.Contains(r.stderr, want) {
		t.Errorf("put signed by a key no agent trusts: stderr %q, want %q", r.stderr, want)
	}

	putDoc(t, kv, agent("web2", nodestatus.Trust{KeyIDs: []string{other, ops}, Threshold: 1}))
	putDoc(t, kv, agent("web3", nodestatus.Trust{KeyIDs: []string{other, ops}, Threshold: 2}))
	putDoc(t, kv, agent("web4", nodestatus.Trust{Unsigned: true}))
	stopped := agent("web5", nodestatus.Trust{KeyIDs: []string{other}, Threshold: 1})
	stopped.StoppedAt = now
	putDoc(t, kv, stopped)
	r = mmsOK(t, mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "11").stdout, "put", "--server", url)
	want = fmt.Sprintf("warning: 2 of 4 reporting agents will reject this spec (signed by %s): web1 (trusts none of its signing keys), web3 (needs 2 signatures from its keys, the spec has 1)", ops)
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

func TestJudge(t *testing.T) {
	next := &packer.Opened{Format: packer.FormatV2, Digest: "d17", Spec: specWithSerial(17)}
	now := time.Now().UTC()
	doc := func(edit func(*nodestatus.Document)) *nodestatus.Document {
		d := statusDocument("n", 16, now)
		edit(&d)
		return &d
	}
	tests := []struct {
		name       string
		doc        *nodestatus.Document
		wantState  waitState
		wantDetail string
	}{
		{"applied", doc(func(d *nodestatus.Document) {
			d.Applied = &nodestatus.Applied{Serial: 17, Digest: "d17", Format: "v2"}
		}), waitApplied, ""},
		{"applied with a failed entry", doc(func(d *nodestatus.Document) {
			d.Applied = &nodestatus.Applied{Serial: 17, Digest: "d17", Format: "v2"}
			d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "failed", Reason: "install: sha256 mismatch"}, {Name: "db", Outcome: "installed"}}
		}), waitFailed, "web failed: install: sha256 mismatch"},
		{"rejected", doc(func(d *nodestatus.Document) {
			d.Seen = &nodestatus.Seen{Serial: 17, Digest: "d17", Format: "v2", Outcome: nodestatus.SeenUntrusted, Reason: "spec signed by no trusted key"}
		}), waitFailed, "serial 17 untrusted: spec signed by no trusted key"},
		{"not yet", doc(func(*nodestatus.Document) {}), waitPending, "runs serial 16"},
		{"downloading", doc(func(d *nodestatus.Document) {
			d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "downloading", Download: &nodestatus.Download{Done: 1 << 20, Total: 4 << 20}}}
		}), waitPending, "web downloading: 1.0 MiB of 4.0 MiB (25%)"},
		{"never applied", doc(func(d *nodestatus.Document) { d.Applied = nil }), waitPending, "never applied a spec"},
		{"stopped", doc(func(d *nodestatus.Document) { d.StoppedAt = now }), waitFailed, "the agent stopped"},
		{"newer", doc(func(d *nodestatus.Document) {
			d.Applied = &nodestatus.Applied{Serial: 18, Digest: "d18", Format: "v2"}
		}), waitSuperseded, "runs serial 18, a newer spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, detail := judge(tt.doc, next)
			if diff := cmp.Diff([]any{tt.wantState, tt.wantDetail}, []any{state, detail}); diff != "" {
				t.Errorf("judge() (-want +got):\n%s", diff)
			}
		})
	}
}

func specWithSerial(serial uint64) *spec.Spec { return &spec.Spec{Serial: serial} }

// put --wait follows the status documents: it skips agents that were
// stale when it started, prints progress as agents apply, and ends when
// every agent applied or failed, naming the failures; it times out naming
// who is missing; it refuses to wait for nobody.
func TestPutWaitDocuments(t *testing.T) {
	url, kv := putServer(t)
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
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
	putDoc(t, kv, statusDocument("web1", 1, now))
	putDoc(t, kv, statusDocument("web2", 1, now))
	putDoc(t, kv, statusDocument("web3", 1, now.Add(-time.Hour)))

	env, _ = pack("2")
	r := mms(t, env, "put", "--server", url, "--wait", "1s")
	want := "mms: timed out after 1s waiting for serial 2: 0 of 2 agents applied it:\n  web1: not yet: runs serial 1\n  web2: not yet: runs serial 1\n"
	if r.code != 2 || !strings.HasSuffix(r.stderr, want) {
		t.Errorf("put --wait with nobody applying = exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
	}

	env, next := pack("3")
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"put", "--server", url, "--wait", "30s"}, strings.NewReader(env), &out, &errOut)
	}()
	waitFor(t, &errOut, "serial 3: 0/2 applied")
	applied := statusDocument("web1", 3, time.Now().UTC())
	applied.Applied.Digest, applied.Seen.Digest = next.Digest, next.Digest
	putDoc(t, kv, applied)
	waitFor(t, &errOut, "serial 3: 1/2 applied\n")
	failing := statusDocument("web2", 3, time.Now().UTC())
	failing.Applied.Digest, failing.Seen.Digest = next.Digest, next.Digest
	failing.Entries = []nodestatus.Entry{{Name: "web", Outcome: "failed", Reason: "install: sha256 mismatch"}}
	putDoc(t, kv, failing)
	var code int
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case code = <-done:
			return nil
		default:
			return errors.New("put --wait still running after every agent applied or failed")
		}
	})
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
