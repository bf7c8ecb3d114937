package nodestatus

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/natsbox"
)

const goodDocument = `{"version":2,"identity":"web1","agent_version":"dev","started_at":"2026-01-02T03:04:05Z",
"updated_at":"2026-01-02T03:05:05Z","heartbeat":"30s",
"trust":{"key_ids":["k1"],"threshold":1,"allow_v1":false,"unsigned":false},
"applied":{"serial":7,"digest":"d","format":"v2","stale":false},
"seen":{"serial":4,"digest":"d4","format":"v2","outcome":"ignored-older","reason":"ignored older spec (serial 4 < 7)"},
"entries":[{"name":"web","outcome":"installed","version":"1.0.0","checksum":"c"}],
"machines":[{"name":"web","version":"1.0.0","state":"RUN","path":"/m/web","last_outcome":"installed","last_error":""}],
"nats":{"connected":true,"reconnects":0,"disconnects":0},"last_error":"","from_the_future":1}`

// legacyDocument is a version 1 document, as agents before the applied /
// seen split wrote it.
const legacyDocument = `{"identity":"web1","updated_at":"2026-01-02T03:05:05Z","heartbeat":"30s",
"spec":{"serial":7,"digest":"d","format":"v2","accepted_at":"2026-01-02T03:00:00Z","stale":true,"error":"x",
"seen":{"serial":4,"digest":"d4","outcome":"replayed","reason":"ignored older spec (serial 4 < 7)"},"reported_at":"2026-01-02T03:04:00Z"},
"machines":[]}`

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr []string
	}{
		{"good, unknown fields ignored", goodDocument, nil},
		{"version 1", legacyDocument, nil},
		{"minimal", `{"identity":"a","updated_at":"2026-01-02T03:04:05Z"}`, nil},
		{"not json", `nope`, []string{"decode status document"}},
		{"wrong type", `{"identity":5}`, []string{"decode status document"}},
		{"every missing field", `{"heartbeat":"soon"}`, []string{"identity is missing", "updated_at is missing", `heartbeat "soon" is not a positive duration`}},
		{"negative heartbeat", `{"identity":"a","updated_at":"2026-01-02T03:04:05Z","heartbeat":"-1s"}`, []string{`heartbeat "-1s"`}},
		{"too big", `{"identity":"` + strings.Repeat("a", MaxDocumentSize) + `"}`, []string{"more than the"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDocument([]byte(tt.in))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseDocument() = %v, want no error", err)
				}
				if d.Machines == nil || d.Entries == nil {
					t.Errorf("ParseDocument() machines %v, entries %v; want empty lists, not nil", d.Machines, d.Entries)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDocument() = %+v, want an error", d)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseDocument() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseDocumentFields(t *testing.T) {
	d, err := ParseDocument([]byte(goodDocument))
	if err != nil {
		t.Fatal(err)
	}
	want := &Document{
		Version: 2, Identity: "web1", AgentVersion: "dev",
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2026, 1, 2, 3, 5, 5, 0, time.UTC), Heartbeat: "30s",
		Trust:    &Trust{KeyIDs: []string{"k1"}, Threshold: 1},
		Applied:  &Applied{Serial: 7, Digest: "d", Format: "v2"},
		Seen:     &Seen{Serial: 4, Digest: "d4", Format: "v2", Outcome: SeenIgnoredOlder, Reason: "ignored older spec (serial 4 < 7)"},
		Entries:  []Entry{{Name: "web", Outcome: "installed", Version: "1.0.0", Checksum: "c"}},
		Machines: []Machine{{Name: "web", Version: "1.0.0", State: "RUN", Path: "/m/web", LastOutcome: "installed"}},
		NATS:     natsbox.ConnState{Connected: true},
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("ParseDocument() (-want +got):\n%s", diff)
	}
	if got := d.HeartbeatInterval(); got != 30*time.Second {
		t.Errorf("HeartbeatInterval() = %v, want 30s", got)
	}
	if got := d.AppliedSerial(); got != 7 {
		t.Errorf("AppliedSerial() = %d, want 7", got)
	}
}

// A version 1 document reads as version 2: its spec is the applied one,
// its seen rejection kind becomes the outcome word.
func TestParseDocumentVersion1(t *testing.T) {
	d, err := ParseDocument([]byte(legacyDocument))
	if err != nil {
		t.Fatal(err)
	}
	wantApplied := &Applied{Serial: 7, Digest: "d", Format: "v2", AcceptedAt: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), Stale: true}
	wantSeen := &Seen{Serial: 4, Digest: "d4", Outcome: SeenIgnoredOlder, Reason: "ignored older spec (serial 4 < 7)", At: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
	if diff := cmp.Diff(wantApplied, d.Applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSeen, d.Seen); diff != "" {
		t.Errorf("seen (-want +got):\n%s", diff)
	}
	never, err := ParseDocument([]byte(`{"identity":"a","updated_at":"2026-01-02T03:04:05Z","spec":{"serial":0,"digest":"","format":""}}`))
	if err != nil {
		t.Fatal(err)
	}
	if never.Applied != nil || never.Seen != nil {
		t.Errorf("version 1 document of a node that applied nothing: applied %+v, seen %+v; want both null", never.Applied, never.Seen)
	}
}

// The JSON shape is stable: every documented field is present even when
// empty, and a node that never applied a spec says so with null.
func TestDocumentShape(t *testing.T) {
	b, err := json.Marshal(Document{Machines: []Machine{{Name: "m"}}, Entries: []Entry{{Name: "e"}}})
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "identity", "agent_version", "started_at", "updated_at", "heartbeat", "trust", "applied", "seen", "entries", "machines", "nats", "last_error"} {
		if _, ok := top[k]; !ok {
			t.Errorf("document JSON lacks %q: %s", k, b)
		}
	}
	for _, k := range []string{"trust", "applied", "seen"} {
		if string(top[k]) != "null" {
			t.Errorf("document JSON %q = %s, want null when unknown", k, top[k])
		}
	}
	b, err = json.Marshal(Document{Trust: &Trust{}, Applied: &Applied{}, Seen: &Seen{}, Entries: []Entry{{}}, Machines: []Machine{{}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for obj, keys := range map[string][]string{
		"trust":    {"key_ids", "threshold", "allow_v1", "unsigned"},
		"applied":  {"serial", "digest", "format", "stale"},
		"seen":     {"serial", "digest", "outcome"},
		"entries":  {"name", "outcome"},
		"machines": {"name", "version", "state", "path", "last_outcome", "last_error"},
	} {
		raw := top[obj]
		if raw[0] == '[' {
			raw = raw[1 : len(raw)-1]
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		for _, k := range keys {
			if _, ok := fields[k]; !ok {
				t.Errorf("%s JSON lacks %q: %s", obj, k, top[obj])
			}
		}
	}
}

func FuzzParseDocument(f *testing.F) {
	f.Add([]byte(goodDocument))
	f.Add([]byte(`{"identity":"a","updated_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"heartbeat":"soon"}`))
	f.Add([]byte(`{"identity":"a","updated_at":"2026-01-02T03:04:05Z","machines":null,"spec":{"serial":-1}}`))
	f.Add([]byte(legacyDocument))
	f.Add([]byte(`{"identity":"a","updated_at":"2026-01-02T03:04:05Z","spec":{"format":"v1","seen":{"outcome":"unknown_key"}},"entries":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDocument(data)
		if err != nil {
			return
		}
		if d.Identity == "" || d.UpdatedAt.IsZero() || d.Machines == nil || d.Entries == nil {
			t.Fatalf("ParseDocument(%q) = %+v without error, want identity, updated_at, machines and entries", data, d)
		}
		_ = d.Problems() // never panics, whatever the document holds
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", d, err)
		}
		again, err := ParseDocument(b)
		if err != nil {
			t.Fatalf("ParseDocument(re-encoded %s) = %v, want no error", b, err)
		}
		if !cmp.Equal(again.Applied, d.Applied) || !cmp.Equal(again.Seen, d.Seen) {
			t.Fatalf("re-encoded document reads as applied %+v seen %+v, want %+v %+v", again.Applied, again.Seen, d.Applied, d.Seen)
		}
	})
}
