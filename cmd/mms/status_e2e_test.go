package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// e2eFleet is agents sharing one embedded server, an archive repository
// and the operator's key, in a working directory holding ops.key.
type e2eFleet struct {
	t      *testing.T
	dir    string
	login  agentLogin
	pub    string // ops.pub
	repo   *archiveRepo
	kv     jetstream.KeyValue // the spec bucket, for writes mms put refuses
	errOut map[string]*syncbuf.Buffer
}

// startFleet starts the first agent with the embedded server, then one
// client agent per further identity.
func startFleet(t *testing.T, identities ...string) *e2eFleet {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	_, pub := newKeyPair(t, dir, "ops")
	f := &e2eFleet{t: t, dir: dir, pub: pub, repo: newArchiveRepo(t), errOut: map[string]*syncbuf.Buffer{}}
	for i, id := range identities {
		args := []string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", filepath.Join(dir, "state-"+id),
			"--allow-http", "--identity", id, "--status-interval", "500ms"}
		if i == 0 {
			args = append(args, "--listen", "127.0.0.1:0")
		} else {
			args = append(args, f.login.flags()...)
		}
		_, errOut, _ := runUntil(t, args...)
		f.errOut[id] = errOut
		if i == 0 {
			// The embedded server wants the login the agent keeps in its
			// state directory: the other agents and the commands give it
			// in the URL.
			agentURL(t, errOut)
			f.login = loginOf(t, filepath.Join(dir, "state-"+id))
		}
	}
	nc := f.login.connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if f.kv, err = js.KeyValue(t.Context(), "MACHINES"); err != nil {
		t.Fatal(err)
	}
	// Every agent reports before the test goes on, so put --wait counts it.
	for _, id := range identities {
		pollStatus(t, f.conn(), id, func(d *nodestatus.Document) error {
			if d.Seen == nil {
				return fmt.Errorf("%s: the manager has not reported yet", id)
			}
			return nil
		})
	}
	return f
}

// conn is the connection flags of mms commands.
func (f *e2eFleet) conn() []string { return f.login.flags() }

// pack signs machines.json holding entries with the key file, with
// further pack flags, and returns the envelope.
func (f *e2eFleet) pack(keyFile string, serial uint64, extra []string, entries ...spec.Machine) string {
	f.t.Helper()
	writeMachines(f.t, f.dir, entries...)
	args := append([]string{"pack", "machines.json", "--key-file", keyFile, "--allow-http", "--serial", strconv.FormatUint(serial, 10)}, extra...)
	return mmsOK(f.t, "", args...).stdout
}

// write puts env straight into the spec bucket, as `nats kv put` would.
func (f *e2eFleet) write(env string) {
	f.t.Helper()
	if _, err := f.kv.Put(f.t.Context(), "machines", []byte(strings.TrimSpace(env))); err != nil {
		f.t.Fatal(err)
	}
}

// wantRefused polls identity's status until it saw serial with outcome
// and a reason matching reason, and checks it still runs applied.
func wantRefused(t *testing.T, conn []string, identity string, applied, serial uint64, outcome string, reason *regexp.Regexp) *nodestatus.Document {
	t.Helper()
	return pollStatus(t, conn, identity, func(d *nodestatus.Document) error {
		if d.Seen == nil || d.Seen.Serial != serial {
			return fmt.Errorf("seen = %+v, want serial %d", d.Seen, serial)
		}
		if d.Seen.Outcome != outcome || !reason.MatchString(d.Seen.Reason) {
			return fmt.Errorf("seen = %+v, want outcome %s and a reason matching %s", d.Seen, outcome, reason)
		}
		if d.AppliedSerial() != applied {
			return fmt.Errorf("applied = %+v, want serial %d still", d.Applied, applied)
		}
		return nil
	})
}

// TestStatusShowsRefusedSpecs follows an operator through the three ways
// a spec is refused: an older serial (a replay), a spec signed by a key
// the node does not trust, an expired spec. Each leaves APPLIED at the
// spec that runs, shows SEEN with the outcome and the exact reason (in
// the document, the table and `status NODE`), and makes --check exit 2
// naming the node and why. A good spec clears it.
func TestStatusShowsRefusedSpecs(t *testing.T) {
	const identity = "web1"
	f := startFleet(t, identity)
	otherKey, otherPub := newKeyPair(t, f.dir, "other")
	web := f.repo.publish(t, "web", "1.0.0")
	const good = 4242
	mmsOK(t, f.pack("ops.key", good, nil, web), append([]string{"put"}, f.conn()...)...)
	pollStatus(t, f.conn(), identity, func(d *nodestatus.Document) error {
		return wantMachine(d, good, "web", "1.0.0", "ready", web.Checksum, manager.EntryInstalled)
	})
	if code, stderr := statusCheck(t, f.conn()); code != 0 {
		t.Fatalf("status --check with serial %d applied = exit %d (%s), want 0", good, code, stderr)
	}

	tests := []struct {
		name    string
		env     func() string
		serial  uint64
		outcome string
		reason  *regexp.Regexp
	}{
		{
			name:    "older serial",
			env:     func() string { return f.pack("ops.key", 4000, nil, web) },
			serial:  4000,
			outcome: nodestatus.SeenIgnoredOlder,
			reason:  regexp.MustCompile(`^open spec: ignored older spec \(serial 4000 < 4242\)$`),
		},
		{
			name:    "untrusted key",
			env:     func() string { return f.pack(otherKey, 4243, nil, web) },
			serial:  4243,
			outcome: nodestatus.SeenUntrusted,
			reason:  regexp.MustCompile(`^open spec: spec rejected: 0/1 valid signatures \(keyid ` + keyID(t, otherPub) + ` not trusted\)$`),
		},
		{
			name:    "expired",
			env:     func() string { return f.pack("ops.key", 4244, []string{"--expires", "1ns"}, web) },
			serial:  4244,
			outcome: nodestatus.SeenExpired,
			reason:  regexp.MustCompile(`^open spec: spec expired \d+s ago$`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.write(tt.env()) // as `nats kv put` would: mms put refuses the older and the expired one
			doc := wantRefused(t, f.conn(), identity, good, tt.serial, tt.outcome, tt.reason)
			if m := findMachine(doc, "web"); m == nil || m.Version != "1.0.0" || m.State != "ready" {
				t.Errorf("web after the refused spec = %+v, want 1.0.0 still ready", m)
			}

			table := mmsOK(t, "", append([]string{"status"}, f.conn()...)...).stdout
			row := regexp.MustCompile(`(?m)^web1\s+4242\s+` + strconv.FormatUint(tt.serial, 10) + ` ` + tt.outcome + `\s+.*\brejected\b`)
			if !row.MatchString(table) {
				t.Errorf("status table:\n%s\nwant a row matching %s", table, row)
			}
			node := mmsOK(t, "", append([]string{"status", identity}, f.conn()...)...).stdout
			seen := regexp.MustCompile(fmt.Sprintf(`(?m)^Seen:\s+serial %d %s: %s \(\d+s ago\)$`, tt.serial, tt.outcome, regexp.QuoteMeta(doc.Seen.Reason)))
			if !seen.MatchString(node) || !regexp.MustCompile(`(?m)^Applied:\s+serial 4242 \(v2,`).MatchString(node) {
				t.Errorf("status %s:\n%s\nwant the applied serial 4242 and a line matching %s", identity, node, seen)
			}
			code, stderr := statusCheck(t, f.conn())
			want := fmt.Sprintf("  web1: rejected: serial %d %s: %s", tt.serial, tt.outcome, doc.Seen.Reason)
			if code != 2 || !strings.Contains(stderr, want) {
				t.Errorf("status --check = exit %d, stderr %q; want 2 and %q", code, stderr, want)
			}
		})
	}

	mmsOK(t, f.pack("ops.key", 4245, nil, web), append([]string{"put"}, f.conn()...)...)
	pollStatus(t, f.conn(), identity, func(d *nodestatus.Document) error {
		if d.AppliedSerial() != 4245 || d.Seen == nil || d.Seen.Outcome != nodestatus.SeenApplied {
			return fmt.Errorf("applied %+v seen %+v, want 4245 applied", d.Applied, d.Seen)
		}
		return nil
	})
	if code, stderr := statusCheck(t, f.conn()); code != 0 {
		t.Errorf("status --check after a good spec = exit %d (%s), want 0", code, stderr)
	}
}

// TestPutWaitAgents: `put --wait` exits 0 once three agents applied the
// spec, and 2 naming the node and the entry that failed when one cannot
// install it; the failing fleet's `mms status`, `mms status NODE` and
// `mms events` say the same (logged, for the record).
func TestPutWaitAgents(t *testing.T) {
	f := startFleet(t, "web1", "web2", "web3")
	web := f.repo.publish(t, "web", "1.0.0")
	db := f.repo.publish(t, "db", "1.0.0")
	db.Match = "identity('^db')"

	r := mmsOK(t, f.pack("ops.key", 100, nil, web, db), append([]string{"put", "--wait", "30s"}, f.conn()...)...)
	if !strings.Contains(r.stdout, "serial 100 applied by all 3 reporting agents") || !strings.Contains(r.stderr, "serial 100: 3/3 applied") {
		t.Errorf("put --wait of a good spec: stdout %q, stderr %q; want all 3 applied", r.stdout, r.stderr)
	}
	for _, id := range []string{"web1", "web2", "web3"} {
		if _, err := os.Stat(filepath.Join(f.dir, "state-"+id, "machines", "web", "machine.yaml")); err != nil {
			t.Errorf("%s: web not installed after put --wait returned: %v", id, err)
		}
	}

	// web 2.0.0 for everyone; on web3 an extra entry whose archive does
	// not match its checksum.
	web2 := f.repo.publish(t, "web", "2.0.0")
	bad := f.repo.publish(t, "cache", "1.0.0")
	bad.Checksum = web.Checksum
	bad.Match = "identity('^web3$')"
	r = mms(t, f.pack("ops.key", 101, nil, web2, db, bad), append([]string{"put", "--wait", "30s"}, f.conn()...)...)
	want := regexp.MustCompile(`mms: serial 101 failed on 1 of 3 agents:\n  web3: cache failed: install: .*sha256 mismatch.*\n$`)
	if r.code != 2 || !want.MatchString(r.stderr) {
		t.Errorf("put --wait with a failing entry = exit %d, stderr %q; want 2 matching %s", r.code, r.stderr, want)
	}
	if !regexp.MustCompile(`serial 101: 2/3 applied, 1 failed: web3: cache failed: install: `).MatchString(r.stderr) {
		t.Errorf("put --wait progress = %q, want the failed node and entry", r.stderr)
	}

	// What an operator then sees.
	status := mms(t, "", append([]string{"status", "--check"}, f.conn()...)...)
	if status.code != 2 || !regexp.MustCompile(`(?m)^web3\s+101\s+.*cache failed: install: .*failed$`).MatchString(status.stdout) {
		t.Errorf("status --check = exit %d:\n%s%s\nwant 2 and web3's failure", status.code, status.stdout, status.stderr)
	}
	// web 2.0.0 loads idle and its check makes it ready a moment later.
	var node string
	natstest.Eventually(t, e2eTimeout, func() error {
		node = mmsOK(t, "", append([]string{"status", "web3"}, f.conn()...)...).stdout
		for _, w := range []string{`(?m)^web\s+updated\s+2\.0\.0\s+ready\s`, `(?m)^db\s+skipped\s+.*match "identity\('\^db'\)" does not select this node$`, `(?m)^cache\s+failed\s+.*install: .*sha256 mismatch`} {
			if !regexp.MustCompile(w).MatchString(node) {
				return fmt.Errorf("status web3:\n%s\nwant a line matching %s", node, w)
			}
		}
		return nil
	})
	events, _, stop := runUntil(t, append([]string{"events", "--since", "1h"}, f.conn()...)...)
	waitFor(t, events, "web3 mms_manager machines machines failure: serial 101: web updated, db skipped (match identity('^db')), cache failed (install: ",
		"web1 web host web loaded: 1.0.0 → 2.0.0")
	stop()
	t.Logf("$ mms status --check\n%s%s", status.stdout, status.stderr)
	t.Logf("$ mms status web3\n%s", node)
	t.Logf("$ mms events --since 1h\n%s", events.String())
	t.Logf("$ mms put --wait 30s\n%s%s", r.stdout, r.stderr)
}
