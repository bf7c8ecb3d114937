package nodestatus

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	written := now.Add(-time.Minute)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	doc := func(identity string, at time.Time) []byte {
		b, err := json.Marshal(Document{Version: DocumentVersion, Identity: identity, StartedAt: at, UpdatedAt: at, Heartbeat: "30s",
			Seen: &Seen{Outcome: SeenApplied, At: at}, Applied: &Applied{Serial: 1, AcceptedAt: at},
			Entries: []Entry{{Name: "web", Outcome: "updated", HealthyAt: at, Download: &Download{StartedAt: at, UpdatedAt: at}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name, key string
		data      []byte
		written   time.Time
		wantTime  time.Time // every time in the document
		forged    string    // ForgedError text, "" for none
	}{
		{"genuine", "web1", doc("web1", written.Add(-time.Second)), written, written.Add(-time.Second), ""},
		{"escaped key", "web=201", doc("web 1", written), written, written, ""},
		{"from the future: the server's write time", "web1", doc("web1", future), written, written, ""},
		{"from the future, write time unknown: the reader's clock", "web1", doc("web1", future), time.Time{}, now, ""},
		{"another node's identity", "web1", doc("web2", written), written, written, "key web1 claims identity web2"},
		{"an identity that does not exist", "web1", doc("fake29", future), written, written, "key web1 claims identity fake29"},
		{"a key of no identity", "web=41", doc("webA", written), written, written, "key web=41 belongs to no identity but claims identity webA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Read(tt.key, tt.data, tt.written, now)
			if tt.forged != "" {
				var f *ForgedError
				if !errors.As(err, &f) || err.Error() != tt.forged || d != nil {
					t.Fatalf("Read = %v, %v; want no document and %q", d, err, tt.forged)
				}
				d = f.Doc
			} else if err != nil {
				t.Fatal(err)
			}
			for name, got := range map[string]time.Time{
				"started_at": d.StartedAt, "updated_at": d.UpdatedAt, "seen.at": d.Seen.At, "applied.accepted_at": d.Applied.AcceptedAt,
				"healthy_at": d.Entries[0].HealthyAt, "download.started_at": d.Entries[0].Download.StartedAt, "download.updated_at": d.Entries[0].Download.UpdatedAt,
			} {
				if !got.Equal(tt.wantTime) {
					t.Errorf("%s = %v, want %v", name, got, tt.wantTime)
				}
			}
		})
	}
}

// FuzzRead: whatever a node writes under whatever key, a document Read
// accepts speaks for the key's identity and holds no time after the
// moment it was stored; a forged one names both identities.
func FuzzRead(f *testing.F) {
	f.Add("web1", []byte(goodDocument))
	f.Add("web=201", []byte(`{"identity":"web 1","updated_at":"2099-01-02T03:04:05Z","started_at":"2099-01-01T00:00:00Z"}`))
	f.Add("web1", []byte(`{"identity":"fake29","updated_at":"2099-01-02T03:04:05Z","entries":[{"name":"web","outcome":"failed","healthy_at":"2099-01-01T00:00:00Z"}]}`))
	f.Add("=41", []byte(`{"identity":"A","updated_at":"2026-01-02T03:04:05Z"}`))
	written := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		d, err := Read(key, data, written, written.Add(time.Hour))
		var forged *ForgedError
		switch {
		case errors.As(err, &forged):
			if forged.Key != key || forged.Doc == nil || forged.Claimed != forged.Doc.Identity {
				t.Fatalf("Read(%q) forged = %+v", key, forged)
			}
			d = forged.Doc
		case err != nil:
			return
		case Key(d.Identity) != key:
			t.Fatalf("Read(%q) accepted a document of %q, whose key is %q", key, d.Identity, Key(d.Identity))
		}
		for _, at := range []time.Time{d.StartedAt, d.UpdatedAt, d.StoppedAt, d.LastErrorAt} {
			if at.After(written) {
				t.Fatalf("Read(%q) left a time %v after the write %v", key, at, written)
			}
		}
		for _, e := range d.Entries {
			if e.HealthyAt.After(written) {
				t.Fatalf("Read(%q) left healthy_at %v after the write %v", key, e.HealthyAt, written)
			}
		}
	})
}
