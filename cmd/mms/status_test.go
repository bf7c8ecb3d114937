package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/nodestatus/nodestatustest"
)

// statusFleet starts a server holding a v2 spec with serial 17 and a status
// bucket with docs, and returns its URL.
func statusFleet(t *testing.T, docs ...nodestatus.Document) string {
	t.Helper()
	srv := natstest.RunJetStream(t)
	url := srv.ClientURL()
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	env := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "17").stdout
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	// Not put --create: its "created bucket" line races with the client's
	// log lines on a bytes.Buffer stderr under -race.
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"}); err != nil {
		t.Fatal(err)
	}
	mmsOK(t, env, "put", "--server", url)
	kv := createStatusBucket(t, js)
	for _, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), nodestatus.Key(d.Identity), b); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

// statusDocument is the document of an agent that applied the v2 spec
// with serial (digest "d<serial>").
var statusDocument = nodestatustest.Applied

func TestStatus(t *testing.T) {
	now := time.Now().UTC()
	run := func(state string) nodestatus.Machine {
		return nodestatus.Machine{Name: state + "-m", Version: "1.0.0", State: state, Path: "/m", LastOutcome: "installed"}
	}
	healthy := statusDocument("web1", 17, now, run("RUN"), run("RUN"), run("MANAGE"))
	stale := statusDocument("web2", 17, now.Add(-10*time.Minute), run("RUN"))
	behind := statusDocument("db1", 16, now)
	replayed := statusDocument("web3", 17, now, run("RUN"))
	replayed.Seen = &nodestatus.Seen{Serial: 4, Format: "v2", Digest: "d4", Outcome: nodestatus.SeenIgnoredOlder, Reason: "open spec: ignored older spec (serial 4 < 17)"}
	failing := statusDocument("web4", 17, now, run("RUN"))
	failing.Entries = []nodestatus.Entry{
		{Name: "web", Outcome: "failed", Reason: "install: sha256 mismatch", Checksum: sumA},
		{Name: "db", Outcome: "skipped", Reason: `match "identity('^db')" does not select this node`, Match: "identity('^db')", Checksum: sumB},
	}
	never := statusDocument("new1", 0, now)
	never.Applied = nil
	never.Seen = &nodestatus.Seen{Serial: 17, Format: "v2", Digest: "d17", Outcome: nodestatus.SeenUntrusted, Reason: "open spec: spec signed by no trusted key"}
	url := statusFleet(t, healthy, stale, behind, replayed, failing, never)

	t.Run("table", func(t *testing.T) {
		r := mmsOK(t, "", "status", "--server", url)
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		want := []string{
			`^NATS: ` + regexp.QuoteMeta(url) + `$`,
			`^spec MACHINES/machines \(revision 1\): v2 serial 17, 1 machine \(signature not verified here\)$`,
			`^IDENTITY\s+APPLIED\s+SEEN\s+MACHINES\s+MESSAGE\s+AGE\s+FLAGS$`,
			`^db1\s+16\s+0\s+runs serial 16, the current spec is serial 17\s+\d+s\s+behind$`,
			`^new1\s+never\s+17 untrusted\s+0\s+serial 17 untrusted: open spec: spec signed by no trusted key\s+\d+s\s+rejected,behind$`,
			`^web1\s+17\s+3 \(RUN 2, MANAGE 1\)\s+\d+s\s*$`,
			`^web2\s+17\s+1 \(RUN 1\)\s+no update for 10m \(limit 1m30s\): the agent stopped or lost NATS\s+10m\s+stale$`,
			`^web3\s+17\s+4 ignored-older\s+1 \(RUN 1\)\s+serial 4 ignored-older: open spec: ignored older spec \(serial 4 < 17\)\s+\d+s\s+rejected$`,
			`^web4\s+17\s+1 \(RUN 1\)\s+web failed: install: sha256 mismatch\s+\d+s\s+failed$`,
		}
		if len(lines) != len(want) {
			t.Fatalf("status printed %d lines, want %d:\n%s", len(lines), len(want), r.stdout)
		}
		for i, w := range want {
			if !regexp.MustCompile(w).MatchString(lines[i]) {
				t.Errorf("status line %d = %q, want it to match %s", i+1, lines[i], w)
			}
		}
	})

	t.Run("node", func(t *testing.T) {
		r := mmsOK(t, "", "status", "--server", url, "web4")
		for _, w := range []string{
			`(?m)^Identity:\s+web4$`,
			`(?m)^Trusts:\s+1 of key k$`,
			`(?m)^Applied:\s+serial 17 \(v2, digest d17\)$`,
			`(?m)^Seen:\s+serial 17 applied$`,
			`(?m)^Flags:\s+failed$`,
			`(?m)^ENTRY\s+OUTCOME\s+VERSION\s+STATE\s+CHECKSUM\s+REASON$`,
			`(?m)^web\s+failed\s+f11ea2005de9\s+install: sha256 mismatch$`,
			`(?m)^db\s+skipped\s+1e85719c6959\s+match "identity\('\^db'\)" does not select this node$`,
			`(?m)^RUN-m\s+1\.0\.0\s+RUN\s+installed\s*$`,
			`(?m)^Problems:\n  failed: web failed: install: sha256 mismatch$`,
		} {
			if !regexp.MustCompile(w).MatchString(r.stdout) {
				t.Errorf("status web4 output does not match %s:\n%s", w, r.stdout)
			}
		}
		r = mmsOK(t, "", "status", "--server", url, "new1")
		if !regexp.MustCompile(`(?m)^Applied:\s+never applied a spec$`).MatchString(r.stdout) ||
			!regexp.MustCompile(`(?m)^Seen:\s+serial 17 untrusted: open spec: spec signed by no trusted key$`).MatchString(r.stdout) {
			t.Errorf("status new1 does not say it never applied a spec and why:\n%s", r.stdout)
		}
		r = mms(t, "", "status", "--server", url, "nosuch")
		if r.code != 1 || !strings.Contains(r.stderr, `no status document for "nosuch" in MACHINES_STATUS; agents that report: db1, new1, web1, web2, web3, web4`) {
			t.Errorf("status nosuch = exit %d, stderr %q; want 1 naming the agents that report", r.code, r.stderr)
		}
		r = mmsOK(t, "", "status", "--server", url, "web3", "--json")
		var doc struct {
			nodestatus.Document
			Flags []fleet.Flag `json:"flags"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Identity != "web3" || len(doc.Flags) != 1 || doc.Flags[0].Name != "rejected" {
			t.Errorf("status web3 --json = %q (%v), want web3's document flagged rejected", r.stdout, err)
		}
	})

	t.Run("json", func(t *testing.T) {
		r := mmsOK(t, "", "status", "--server", url, "--json")
		var docs []nodestatus.Document
		if err := json.Unmarshal([]byte(r.stdout), &docs); err != nil {
			t.Fatalf("status --json output is not a JSON array of documents: %v\n%s", err, r.stdout)
		}
		want := []nodestatus.Document{behind, never, healthy, stale, replayed, failing}
		if diff := cmp.Diff(want, docs); diff != "" {
			t.Errorf("status --json documents (-want +got):\n%s", diff)
		}
		// Each document also carries what the table shows: its key, flags
		// with their details, the message and the age.
		var views []struct {
			Identity string       `json:"identity"`
			Key      string       `json:"key"`
			Flags    []fleet.Flag `json:"flags"`
			Message  string       `json:"message"`
			Age      *float64     `json:"age_seconds"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &views); err != nil {
			t.Fatal(err)
		}
		wantFlags := map[string][]fleet.Flag{
			"db1": {{Name: "behind", Detail: "runs serial 16, the current spec is serial 17"}},
			"new1": {{Name: "rejected", Detail: "serial 17 untrusted: open spec: spec signed by no trusted key"},
				{Name: "behind", Detail: "never applied a spec, the current spec is serial 17"}},
			"web1": {},
			"web2": {{Name: "stale", Detail: "no update for 10m (limit 1m30s): the agent stopped or lost NATS"}},
			"web3": {{Name: "rejected", Detail: "serial 4 ignored-older: open spec: ignored older spec (serial 4 < 17)"}},
			"web4": {{Name: "failed", Detail: "web failed: install: sha256 mismatch"}},
		}
		wantMessage := map[string]string{
			"db1": "runs serial 16, the current spec is serial 17", "new1": "serial 17 untrusted: open spec: spec signed by no trusted key", "web1": "",
			"web2": "no update for 10m (limit 1m30s): the agent stopped or lost NATS", "web3": "serial 4 ignored-older: open spec: ignored older spec (serial 4 < 17)",
			"web4": "web failed: install: sha256 mismatch",
		}
		for _, v := range views {
			if v.Key != nodestatus.Key(v.Identity) || v.Message != wantMessage[v.Identity] || v.Age == nil || (v.Identity == "web2" && *v.Age < 600) {
				t.Errorf("status --json %s: key %q, message %q, age_seconds %v; want key %q, message %q and its age", v.Identity, v.Key, v.Message, v.Age, nodestatus.Key(v.Identity), wantMessage[v.Identity])
			}
			if diff := cmp.Diff(wantFlags[v.Identity], v.Flags); diff != "" {
				t.Errorf("status --json %s flags (-want +got):\n%s", v.Identity, diff)
			}
		}
		if len(views) != len(wantFlags) {
			t.Errorf("status --json printed %d documents, want %d", len(views), len(wantFlags))
		}
	})

	t.Run("check", func(t *testing.T) {
		r := mms(t, "", "status", "--server", url, "--check")
		if r.code != 2 {
			t.Errorf("status --check = exit %d, want 2", r.code)
		}
		want := `mms: 5 of 6 agents need attention:
  db1: behind: runs serial 16, the current spec is serial 17
  new1: rejected: serial 17 untrusted: open spec: spec signed by no trusted key; behind: never applied a spec, the current spec is serial 17
  web2: stale: no update for 10m (limit 1m30s): the agent stopped or lost NATS
  web3: rejected: serial 4 ignored-older: open spec: ignored older spec (serial 4 < 17)
  web4: failed: web failed: install: sha256 mismatch
`
		if !strings.HasSuffix(r.stderr, want) {
			t.Errorf("status --check stderr = %q, want it to end with %q", r.stderr, want)
		}
		r = mmsOK(t, "", "status", "--server", url, "--check", "web1")
		if !strings.Contains(r.stdout, "Flags:") {
			t.Errorf("status --check web1 = %q, want web1 in full", r.stdout)
		}
	})

	t.Run("stale-after", func(t *testing.T) {
		r := mmsOK(t, "", "status", "--server", url, "--stale-after", "1h", "web2")
		if strings.Contains(r.stdout, "stale") {
			t.Errorf("status --stale-after 1h flags a 10-minute-old document stale:\n%s", r.stdout)
		}
	})
}

func TestStatusBucketStates(t *testing.T) {
	srv := natstest.RunJetStream(t)
	url := srv.ClientURL()

	r := mms(t, "", "status", "--server", url)
	if r.code != 1 || !strings.Contains(r.stderr, "bucket MACHINES_STATUS does not exist") || !strings.Contains(r.stderr, "runs 'mms init' once") {
		t.Errorf("status without the bucket = exit %d, stderr %q; want 1 and a hint", r.code, r.stderr)
	}

	r = mmsOK(t, "", "status", "--server", url, "--create")
	if r.stderr != "created status bucket MACHINES_STATUS (stream KV_MACHINES_STATUS, 1 replica: history 1, values ≤ 1MiB, ≤ 256MiB in all); 'mms init' makes every resource of the fleet\n" || !strings.Contains(r.stdout, "no agent has written its status") || !strings.Contains(r.stdout, "none published yet") {
		t.Errorf("status --create on an empty server: stdout %q, stderr %q; want the bucket created and an empty-fleet message", r.stdout, r.stderr)
	}

	r = mmsOK(t, "", "status", "--server", url, "--json", "--check")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("status --json on an empty bucket = %q, want []", r.stdout)
	}

	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "junk", []byte(`{"identity":"`)); err != nil {
		t.Fatal(err)
	}
	r = mms(t, "", "status", "--server", url, "--check")
	if r.code != 2 || !regexp.MustCompile(`(?m)^junk\s+-\s+-\s+decode status document: unexpected end of JSON input\s+-\s+invalid$`).MatchString(r.stdout) || !strings.Contains(r.stderr, `msg="unreadable status document" key=junk error="decode status document`) {
		t.Errorf("status --check with an unreadable document = exit %d\nstdout:\n%s\nstderr:\n%s\nwant 2, an invalid row and the reason", r.code, r.stdout, r.stderr)
	}
}

func TestMachinesSummaryAndAge(t *testing.T) {
	ms := []nodestatus.Machine{{State: "RUN"}, {State: "b"}, {State: "a"}, {State: "RUN"}, {}}
	if got, want := fleet.MachinesSummary(ms), "5 (RUN 2, a 1, b 1, not running 1)"; got != want {
		t.Errorf("MachinesSummary() = %q, want %q", got, want)
	}
	ages := []struct {
		d    time.Duration
		want string
	}{{-time.Second, "0s"}, {59 * time.Second, "59s"}, {90 * time.Minute, "1h"}, {47 * time.Hour, "47h"}, {72 * time.Hour, "3d"}, {5 * time.Minute, "5m"}}
	for _, a := range ages {
		if got := fleet.Age(a.d); got != a.want {
			t.Errorf("fleet.Age(%v) = %q, want %q", a.d, got, a.want)
		}
	}
}

func TestEllipsize(t *testing.T) {
	for _, tt := range []struct {
		s    string
		n    int
		want string
	}{
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abc…"},
		{"ééééé", 3, "éé…"}, // characters, not bytes
		{"", 3, ""},
	} {
		if got := ellipsize(tt.s, tt.n); got != tt.want {
			t.Errorf("ellipsize(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

// TestStatusHelpNamesEveryRejection: the words SEEN may show come from
// manager's one rejection table, so a new rejection is in the help too
// (serial-ahead was missing from a hand-written list).
func TestStatusHelpNamesEveryRejection(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"status", "--help"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("status --help = %d: %s", code, errOut.String())
	}
	help := out.String()
	_, para, _ := strings.Cut(help, "Why a node did not apply a spec: ")
	para, _, _ = strings.Cut(para, "\n\n")
	if want := strings.Join(manager.RejectionOutcomes(), ", ") + "."; strings.ReplaceAll(para, "\n", " ") != want {
		t.Errorf("status --help's rejection paragraph is %q, want %q", para, want)
	}
	for _, line := range strings.Split(para, "\n") {
		if utf8.RuneCountInString(line) > helpWidth {
			t.Errorf("help line of %d columns, want at most %d: %q", utf8.RuneCountInString(line), helpWidth, line)
		}
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		in    string
		width int
		want  string
	}{
		{"", 10, ""},
		{"one two three", 20, "one two three"},
		{"one two three", 7, "one two\nthree"},
		{"one  two\nthree", 8, "one two\nthree"},
		{"a verylongword b", 5, "a\nverylongword\nb"},
		{"é é é", 3, "é é\né"},
	}
	for _, tt := range tests {
		if got := wrap(tt.in, tt.width); got != tt.want {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.in, tt.width, got, tt.want)
		}
	}
}
