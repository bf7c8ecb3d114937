package fleet_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// TestNodes reads status documents written to a real bucket next to a live
// spec (serial 17) and checks what an operator sees of each node: its
// flags in order with what earned each, its one-line message, its age, and
// the counts.
func TestNodes(t *testing.T) {
	b := newBench(t)
	b.putSpec(packer.FormatV2, 17, entry("web", "1.0.0"))
	now := time.Now().UTC()
	edit := func(identity string, f func(*nodestatus.Document)) nodestatus.Document {
		d := doc(identity, 17, now)
		f(&d)
		return d
	}
	violation := `Permissions Violation for Publish to "$KV.MACHINES_STATUS.n"`
	tests := []struct {
		doc     nodestatus.Document
		flags   []fleet.Flag
		message string
	}{
		{doc: doc("healthy", 17, now)},
		{doc: edit("stale-3-heartbeats", func(d *nodestatus.Document) { d.Heartbeat = "1s"; d.UpdatedAt = now.Add(-4 * time.Second) }),
			flags: []fleet.Flag{{Name: "stale", Detail: "no update for 4s (limit 3s): the agent stopped or lost NATS"}}},
		{doc: edit("fresh-within-3-heartbeats", func(d *nodestatus.Document) { d.UpdatedAt = now.Add(-80 * time.Second) })},
		{doc: edit("stale-no-heartbeat", func(d *nodestatus.Document) { d.Heartbeat = ""; d.UpdatedAt = now.Add(-91 * time.Second) }),
			flags: []fleet.Flag{{Name: "stale", Detail: "no update for 1m (limit 1m30s): the agent stopped or lost NATS"}}},
		{doc: edit("stopped", func(d *nodestatus.Document) { d.StoppedAt = now.Add(-time.Hour); d.UpdatedAt = d.StoppedAt }),
			flags: []fleet.Flag{{Name: "stopped", Detail: "the agent stopped 1h ago"}}},
		{doc: edit("behind", func(d *nodestatus.Document) { d.Applied.Serial = 3 }),
			flags: []fleet.Flag{{Name: "behind", Detail: "runs serial 3, the current spec is serial 17"}}},
		{doc: edit("never-applied", func(d *nodestatus.Document) { d.Applied = nil }),
			flags: []fleet.Flag{{Name: "behind", Detail: "never applied a spec, the current spec is serial 17"}}},
		{doc: edit("older-ignored", func(d *nodestatus.Document) {
			d.Seen = &nodestatus.Seen{Serial: 4, Format: "v2", Outcome: nodestatus.SeenIgnoredOlder, Reason: "ignored older spec (serial 4 < 17)"}
		}), flags: []fleet.Flag{{Name: "rejected", Detail: "serial 4 ignored-older: ignored older spec (serial 4 < 17)"}}},
		{doc: edit("untrusted", func(d *nodestatus.Document) {
			d.Seen = &nodestatus.Seen{Serial: 18, Format: "v2", Outcome: nodestatus.SeenUntrusted}
		}), flags: []fleet.Flag{{Name: "rejected", Detail: "serial 18 untrusted"}}},
		{doc: edit("missing-spec", func(d *nodestatus.Document) { d.Seen = &nodestatus.Seen{Outcome: nodestatus.SeenMissing} })},
		{doc: edit("expired", func(d *nodestatus.Document) { d.Applied.Stale = true }),
			flags:   []fleet.Flag{{Name: "expired", Detail: "applied spec serial 17 has expired; publish a new one"}},
			message: "applied spec serial 17 has expired: its machines keep running and nothing is purged until a new spec is published"},
		{doc: edit("failed", func(d *nodestatus.Document) {
			d.Entries = []nodestatus.Entry{{Name: "db", Outcome: "failed", Reason: "http 404"}}
			d.Machines = []nodestatus.Machine{{Name: "db", LastOutcome: "failed", LastError: "http 404"}}
		}), flags: []fleet.Flag{{Name: "failed", Detail: "db failed: http 404"}}},
		{doc: edit("rolled-back", func(d *nodestatus.Document) {
			d.Entries = []nodestatus.Entry{{Name: "db", Outcome: "rolled_back", Reason: "did not load"}}
		}), flags: []fleet.Flag{{Name: "failed", Detail: "db rolled_back: did not load"}}},
		{doc: edit("halted", func(d *nodestatus.Document) {
			d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "held", Reason: "held: rollout halted at wave 1 (node w1 stopped reporting)"}}
		}), flags: []fleet.Flag{{Name: "failed", Detail: "web held: rollout halted at wave 1 (node w1 stopped reporting)"}}},
		{doc: edit("waiting", func(d *nodestatus.Document) {
			d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "held", Reason: "held: waiting for wave 1 (node w1 is pending)"}}
		})},
		{doc: edit("machine-error", func(d *nodestatus.Document) {
			d.Machines = []nodestatus.Machine{{Name: "db", State: "RUN", LastError: "check: exit status 1"}}
		}), flags: []fleet.Flag{{Name: "error", Detail: "db: check: exit status 1"}}},
		{doc: edit("denied", func(d *nodestatus.Document) {
			d.NATS.PermissionViolations = []natsbox.Violation{{Message: violation, Count: 1}}
		}), flags: []fleet.Flag{{Name: "nats", Detail: "the server denied: " + violation}}, message: "nats: " + violation},
		{doc: edit("many", func(d *nodestatus.Document) {
			d.Seen = &nodestatus.Seen{Serial: 18, Format: "v2", Outcome: nodestatus.SeenExpired, Reason: "expired"}
			d.Applied.Serial, d.Applied.Stale = 16, true
			d.Entries = []nodestatus.Entry{{Name: "db", Outcome: "failed", Reason: "http 404"}}
			d.Machines = []nodestatus.Machine{{Name: "cron", State: "RUN", LastError: "boom"}}
			d.UpdatedAt = now.Add(-time.Hour)
			d.NATS.PermissionViolations = []natsbox.Violation{{Message: violation, Count: 1}}
		}), flags: []fleet.Flag{
			{Name: "rejected", Detail: "serial 18 expired: expired"},
			{Name: "failed", Detail: "db failed: http 404"},
			{Name: "expired", Detail: "applied spec serial 16 has expired; publish a new one"},
			{Name: "behind", Detail: "runs serial 16, the current spec is serial 17"},
			{Name: "error", Detail: "cron: boom"},
			{Name: "stale", Detail: "no update for 1h (limit 1m30s): the agent stopped or lost NATS"},
			{Name: "nats", Detail: "the server denied: " + violation},
		}},
	}
	for _, tt := range tests {
		b.putDoc(tt.doc)
	}
	b.putRaw("junk", []byte(`{"identity":"`))
	forged, err := json.Marshal(doc("fake29", 17, now.Add(100*365*24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	b.putRaw("web1", forged)

	tr, err := fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.Spec().Line(), "spec MACHINES/machines (revision 1): v2 serial 17, 1 machine (signature not verified here)"; got != want {
		t.Errorf("Spec().Line() = %q, want %q", got, want)
	}
	nodes := tr.Nodes(now)
	byKey := map[string]fleet.Node{}
	for i, n := range nodes {
		byKey[n.Key] = n
		if i > 0 && nodes[i-1].Identity > n.Identity {
			t.Errorf("nodes not sorted by identity: %q before %q", nodes[i-1].Identity, n.Identity)
		}
	}
	for _, tt := range tests {
		n, ok := byKey[nodestatus.Key(tt.doc.Identity)]
		if !ok {
			t.Errorf("no node for %s", tt.doc.Identity)
			continue
		}
		if diff := cmp.Diff(tt.flags, n.Flags); diff != "" {
			t.Errorf("%s: flags (-want +got):\n%s", tt.doc.Identity, diff)
		}
		message := tt.message
		if message == "" && len(tt.flags) > 0 {
			message = tt.flags[0].Detail
		}
		if n.Message != message {
			t.Errorf("%s: message %q, want %q", tt.doc.Identity, n.Message, message)
		}
		if n.Identity != tt.doc.Identity || n.Doc == nil || n.Doc.Identity != tt.doc.Identity || n.Age != now.Sub(tt.doc.UpdatedAt) {
			t.Errorf("%s: identity %q, document %v, age %v; want its document and age %v", tt.doc.Identity, n.Identity, n.Doc != nil, n.Age, now.Sub(tt.doc.UpdatedAt))
		}
	}
	junk := byKey["junk"]
	if junk.Doc != nil || junk.Identity != "junk" || junk.Err == nil ||
		!cmp.Equal(junk.Flags, []fleet.Flag{{Name: "invalid", Detail: "decode status document: unexpected end of JSON input"}}) ||
		junk.Message != "decode status document: unexpected end of JSON input" {
		t.Errorf("unreadable document: %+v, want it flagged invalid with the reason", junk)
	}

	// A node speaks only for the identity of its key: web1's document
	// that claims to be fake29 (written "a century from now") is nobody's.
	if w := byKey["web1"]; w.Doc != nil || w.Identity != "web1" ||
		!cmp.Equal(w.Flags, []fleet.Flag{{Name: "forged", Detail: "key web1 claims identity fake29"}}) || w.Message != "key web1 claims identity fake29" {
		t.Errorf("forged document: %+v, want web1 flagged forged and nothing of its content", w)
	}

	counts := fleet.CountNodes(nodes)
	want := fleet.Counts{Nodes: 20, Clean: 4, Problems: 15, Flags: map[string]int{
		"forged": 1, "invalid": 1, "rejected": 3, "failed": 4, "expired": 2, "behind": 3, "error": 2, "stale": 3, "stopped": 1, "nats": 2,
	}}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("CountNodes() (-want +got):\n%s", diff)
	}
	view := tr.View(now)
	if diff := cmp.Diff(counts, view.Counts); diff != "" || len(view.Nodes) != len(nodes) || !view.At.Equal(now) {
		t.Errorf("View() counts (-Nodes +View):\n%s; %d nodes", diff, len(view.Nodes))
	}

	// --stale-after: a longer limit clears the stale flags, a shorter one
	// flags a 2s-old document.
	long, err := fleet.Read(t.Context(), b.js, fleet.Options{StaleAfter: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if c := fleet.CountNodes(long.Nodes(now)); c.Flags["stale"] != 0 {
		t.Errorf("with StaleAfter 2h, %d nodes are stale, want none", c.Flags["stale"])
	}
	b.putDoc(doc("two-seconds-old", 17, now.Add(-2*time.Second)))
	short, err := fleet.Read(t.Context(), b.js, fleet.Options{StaleAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n, err := fleet.Find(short.Nodes(now), "two-seconds-old")
	if err != nil || len(n.Flags) != 1 || n.Flags[0].Name != "stale" {
		t.Errorf("with StaleAfter 1s, a 2s-old document: %+v (%v), want it stale", n.Flags, err)
	}
}

// TestNodesAgainstSpecs: how a node compares with the live spec when it is
// a v1 spec, when there is none, and when it does not decode.
func TestNodesAgainstSpecs(t *testing.T) {
	now := time.Now().UTC()
	flagsOf := func(t *testing.T, tr *fleet.Tracker, identity string) []string {
		t.Helper()
		n, err := fleet.Find(tr.Nodes(now), identity)
		if err != nil {
			t.Fatal(err)
		}
		return n.FlagNames()
	}
	read := func(t *testing.T, b *bench) *fleet.Tracker {
		t.Helper()
		tr, err := fleet.Read(t.Context(), b.js, fleet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}

	t.Run("v1", func(t *testing.T) {
		b := newBench(t)
		op := b.putSpec(packer.FormatV1, 0, entry("web", "1.0.0"))
		same, other := doc("same", 0, now), doc("other", 0, now)
		same.Applied = &nodestatus.Applied{Format: "v1", Digest: op.Digest}
		other.Applied = &nodestatus.Applied{Format: "v1", Digest: "0123456789abcdef"}
		b.putDoc(same)
		b.putDoc(other)
		tr := read(t, b)
		if got := flagsOf(t, tr, "same"); len(got) != 0 {
			t.Errorf("a node running the live v1 spec is flagged %v", got)
		}
		n, _ := fleet.Find(tr.Nodes(now), "other")
		if want := []fleet.Flag{{Name: "behind", Detail: "runs v1 0123456789ab, the current spec is v1 " + op.Digest[:12]}}; !cmp.Equal(n.Flags, want) {
			t.Errorf("a node running another v1 spec: %+v, want %+v", n.Flags, want)
		}
		if got, want := tr.Spec().Line(), "spec MACHINES/machines (revision 1): v1 digest "+op.Digest[:12]+", 1 machine (signature not verified here)"; got != want {
			t.Errorf("Spec().Line() = %q, want %q", got, want)
		}
	})

	t.Run("none", func(t *testing.T) {
		b := newBench(t)
		never := doc("never", 0, now)
		never.Applied = nil
		b.putDoc(never)
		tr := read(t, b)
		if got := flagsOf(t, tr, "never"); len(got) != 0 {
			t.Errorf("without a live spec a node is flagged %v, want nothing to compare with", got)
		}
		if sp := tr.Spec(); sp.State != fleet.SpecNone || sp.Line() != "spec MACHINES/machines: none published yet" {
			t.Errorf("Spec() = %s %q, want none published", sp.State, sp.Line())
		}
		op := b.putSpec(packer.FormatV2, 5, entry("web", "1.0.0"))
		if err := b.specKV.Delete(t.Context(), "machines"); err != nil {
			t.Fatal(err)
		}
		if sp := read(t, b).Spec(); sp.State != fleet.SpecNone || sp.Revision != 2 {
			t.Errorf("after the spec (serial %d) was deleted: Spec() = %s at revision %d, want none at revision 2", op.Spec.Serial, sp.State, sp.Revision)
		}
	})

	t.Run("no bucket", func(t *testing.T) {
		srv := natstest.RunJetStream(t)
		js, err := jetstream.New(natstest.Connect(t, srv))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fleet.Read(t.Context(), js, fleet.Options{}); err == nil || !strings.Contains(err.Error(), "open bucket MACHINES_STATUS") {
			t.Errorf("Read() without a status bucket = %v, want it to say so", err)
		}
		if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: nodestatus.Bucket, History: 1, MaxValueSize: nodestatus.MaxDocumentSize}); err != nil {
			t.Fatal(err)
		}
		tr, err := fleet.Read(t.Context(), js, fleet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tr.Spec().Line(), "spec MACHINES/machines: none published yet (no bucket MACHINES)"; got != want || len(tr.Nodes(now)) != 0 {
			t.Errorf("Spec().Line() = %q, want %q, and no node", got, want)
		}
	})

	t.Run("undecodable", func(t *testing.T) {
		b := newBench(t)
		if _, err := b.specKV.Put(t.Context(), "machines", []byte("not an envelope")); err != nil {
			t.Fatal(err)
		}
		b.putDoc(doc("n", 3, now))
		tr := read(t, b)
		sp := tr.Spec()
		if sp.State != fleet.SpecUndecodable || !strings.HasPrefix(sp.Line(), "spec MACHINES/machines (revision 1): cannot decode it (") || !strings.HasSuffix(sp.Line(), "); not checking who is behind") {
			t.Errorf("Spec() = %s %q, want undecodable", sp.State, sp.Line())
		}
		if got := flagsOf(t, tr, "n"); len(got) != 0 || tr.Rollouts(now) != nil {
			t.Errorf("with an undecodable spec: flags %v, rollouts %v; want nothing compared", got, tr.Rollouts(now))
		}
	})
}

// TestFind finds a node by identity, by key, or by the key of an identity,
// and names the agents that report when there is none.
func TestFind(t *testing.T) {
	b := newBench(t)
	now := time.Now().UTC()
	b.putDoc(doc("web 1", 1, now))
	b.putDoc(doc("db1", 1, now))
	tr, err := fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nodes := tr.Nodes(now)
	for _, name := range []string{"web 1", nodestatus.Key("web 1")} {
		if n, err := fleet.Find(nodes, name); err != nil || n.Identity != "web 1" {
			t.Errorf("Find(%q) = %q, %v; want web 1", name, n.Identity, err)
		}
	}
	_, err = fleet.Find(nodes, "nosuch")
	if want := `no status document for "nosuch" in MACHINES_STATUS; agents that report: db1, web 1`; err == nil || err.Error() != want {
		t.Errorf("Find(nosuch) = %v, want %q", err, want)
	}
	if _, err := fleet.Find(nil, "x"); err == nil || !strings.Contains(err.Error(), "no agent has written one yet") {
		t.Errorf("Find() in an empty fleet = %v", err)
	}
}

// TestViewJSON: a view encodes for a page: each node is its document with
// key, flags, message and age added (an unreadable one just those), the
// rollouts with their waves and decisions.
func TestViewJSON(t *testing.T) {
	b := newRolloutBench(t, "")
	b.putRaw("junk", []byte("{"))
	tr, err := fleet.Read(t.Context(), b.js, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(tr.View(b.now.Add(5 * time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Spec struct {
			State    string   `json:"state"`
			Revision uint64   `json:"revision"`
			Serial   uint64   `json:"serial"`
			Machines []string `json:"machines"`
			Line     string   `json:"line"`
		} `json:"spec"`
		Nodes    []map[string]any `json:"nodes"`
		Counts   fleet.Counts     `json:"counts"`
		Rollouts []fleet.Rollout  `json:"rollouts"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if got.Spec.State != "live" || got.Spec.Revision != 1 || got.Spec.Serial != 2 || !cmp.Equal(got.Spec.Machines, []string{"web", "db"}) || got.Spec.Line != tr.Spec().Line() || got.Counts.Nodes != 7 || len(got.Nodes) != 7 || len(got.Rollouts) != 1 || len(got.Rollouts[0].Waves) != 3 {
		t.Fatalf("view JSON: %s", data)
	}
	for _, n := range got.Nodes {
		if n["key"] == "junk" {
			if n["identity"] != nil || n["message"] != "decode status document: unexpected end of JSON input" {
				t.Errorf("unreadable node in JSON: %v", n)
			}
			continue
		}
		if n["identity"] == nil || n["applied"] == nil || n["flags"] == nil || n["age_seconds"] != 5.0 || n["key"] != n["identity"] {
			t.Errorf("node in JSON: %v, want its document with key, flags and age_seconds", n)
		}
	}
	if d := got.Rollouts[0].Waves[0].Decision; !d.Proceed || d.Wave != 1 {
		t.Errorf("wave 1's decision in JSON: %+v", d)
	}
}
