package nodestatus

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFit(t *testing.T) {
	const limit = 64 << 10
	base := func() Document {
		return Document{Version: DocumentVersion, Identity: "web1", UpdatedAt: time.Now().UTC(), Heartbeat: "30s",
			Seen: &Seen{Outcome: SeenApplied}, Entries: []Entry{}, Machines: []Machine{}}
	}
	long := strings.Repeat("é", 2000)
	entries := func(n int, outcome, match, reason string) []Entry {
		out := make([]Entry, n)
		for i := range out {
			out[i] = Entry{Name: fmt.Sprintf("m%05d", i), Outcome: outcome, Match: match, Reason: reason, Checksum: strings.Repeat("a", 64), Installed: strings.Repeat("a", 64)}
		}
		return out
	}
	tests := []struct {
		name    string
		doc     func() Document
		trimmed string // "" for none
		entries int    // entries kept, -1 for all
	}{
		{"small: as it is", base, "", -1},
		{"long reasons are cut", func() Document {
			d := base()
			d.Entries = entries(40, "failed", long, long)
			return d
		}, "reasons, matchers and errors cut to 256 bytes", -1},
		{"many skipped entries leave", func() Document {
			d := base()
			d.Entries = append(entries(2, "installed", "", ""), entries(2000, "skipped", "identity == 'db'", "the matcher is false")...)
			return d
		}, "2000 skipped entries left out", 2},
		{"too many installed entries: the last ones leave", func() Document {
			d := base()
			d.Entries = entries(2000, "installed", "", "")
			return d
		}, "entries left out", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.doc()
			b, err := fit(d, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > limit {
				t.Fatalf("fit wrote %d bytes, more than %d", len(b), limit)
			}
			got, err := ParseDocument(b)
			if err != nil {
				t.Fatal(err)
			}
			if tt.trimmed == "" {
				if full, _ := json.Marshal(d); string(full) != string(b) || got.Trimmed != "" {
					t.Errorf("a small document was changed: %s", got.Trimmed)
				}
				return
			}
			if !strings.HasPrefix(got.Trimmed, fmt.Sprintf("this document was trimmed to fit %d bytes: ", limit)) || !strings.Contains(got.Trimmed, tt.trimmed) {
				t.Errorf("trimmed = %q, want it to say %q", got.Trimmed, tt.trimmed)
			}
			if !strings.Contains(strings.Join(got.Problems(), "\n"), got.Trimmed) {
				t.Errorf("Problems() = %q, want the trimmed note", got.Problems())
			}
			switch {
			case tt.entries > 0 && len(got.Entries) != tt.entries:
				t.Errorf("%d entries kept, want %d", len(got.Entries), tt.entries)
			case tt.entries == 0 && (len(got.Entries) == 0 || len(got.Entries) == len(d.Entries) || len(b) < limit*9/10):
				t.Errorf("%d of %d entries kept in %d bytes: want as many as fit", len(got.Entries), len(d.Entries), len(b))
			}
			for i, e := range got.Entries {
				if e.Name != d.Entries[i].Name || len(e.Reason) > TrimmedTextSize || len(e.Match) > TrimmedTextSize {
					t.Fatalf("entry %d = %+v: want %s, texts cut", i, e, d.Entries[i].Name)
				}
			}
		})
	}
}
