package manager

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	sumA = "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf"
	sumB = "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339"
)

// recordSeeds are decodeRecord inputs, reused as fuzz seeds.
var recordSeeds = []struct {
	name    string
	data    string
	wantErr string
}{
	{name: "installed", data: `{"name":"web","source":"https://x/w.tgz","checksum":"` + sumA + `","verify_checksum":"` + sumB +
		`","serial":3,"installed_at":"2026-01-02T03:04:05Z","phase":"installed"}`},
	{name: "with previous", data: `{"name":"web","source":"s","checksum":"` + sumA + `","verify_checksum":"` + sumB +
		`","serial":3,"phase":"installed","previous":{"checksum":"` + sumB + `","verify_checksum":"` + sumA + `","serial":2},` +
		`"previous_record":{"name":"web","source":"s","checksum":"` + sumB + `","verify_checksum":"` + sumA + `","serial":2,"phase":"installed"}}`},
	{name: "swapping with undo", data: `{"name":"web","source":"s","checksum":"` + sumA + `","verify_checksum":"` + sumB +
		`","serial":4,"phase":"swapping","undo":{"name":"web","source":"s","checksum":"` + sumB + `","verify_checksum":"` + sumA +
		`","serial":3,"phase":"installed"}}`},
	{name: "unknown field", data: `{"name":"web","phase":"installed","password":"x"}`, wantErr: `unknown field "password"`},
	{name: "bad name", data: `{"name":"../etc","phase":"installed"}`, wantErr: "name:"},
	{name: "bad phase", data: `{"name":"web","phase":"half"}`, wantErr: `unknown phase "half"`},
	{name: "undo outside a swap", data: `{"name":"web","phase":"installed","undo":{"name":"web","phase":"installed"}}`, wantErr: "undo set outside a swap"},
	{name: "nested swap", data: `{"name":"web","phase":"swapping","undo":{"name":"web","phase":"swapping"}}`, wantErr: "nested record in phase swapping"},
	{name: "undo of another machine", data: `{"name":"web","phase":"swapping","undo":{"name":"db","phase":"installed"}}`, wantErr: `undo names machine "db"`},
	{name: "previous without its record", data: `{"name":"web","phase":"installed","previous":{"checksum":"a","verify_checksum":"b","serial":1}}`,
		wantErr: "previous and previous_record disagree"},
	{name: "trailing data", data: `{"name":"web","phase":"installed"} x`, wantErr: "data after the JSON object"},
	{name: "not JSON", data: `name: web`, wantErr: "decode:"},
}

func TestDecodeRecord(t *testing.T) {
	for _, tt := range recordSeeds {
		t.Run(tt.name, func(t *testing.T) {
			rf, err := decodeRecord([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeRecord(%s) = %+v, %v, want %q", tt.data, rf, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeRecord(%s) = %v", tt.data, err)
			}
		})
	}
}

func TestRecordStoreRoundTrip(t *testing.T) {
	s := newRecordStore(t.TempDir())
	rf := &recordFile{Record: Record{Name: "web", Source: "https://x/w", Checksum: sumA, VerifyChecksum: sumB, Serial: 7,
		InstalledAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Phase: PhaseInstalled}}
	rf.withPrevious(&Record{Name: "web", Checksum: sumB, VerifyChecksum: sumA, Serial: 6, Phase: PhaseInstalled})
	if err := s.write(rf); err != nil {
		t.Fatal(err)
	}
	got, err := s.read("web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rf, got); diff != "" {
		t.Errorf("read(write(rf)) differs (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(s.path("web"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record file mode = %v, %v, want 0600", fi.Mode(), err)
	}
	// A record under the wrong file name is refused.
	data, _ := os.ReadFile(s.path("web"))
	if err := os.WriteFile(filepath.Join(s.dir, "db.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.read("db"); err == nil || !strings.Contains(err.Error(), `names machine "web"`) {
		t.Errorf("read(db) holding web's record = %v", err)
	}
	if none, err := s.read("nope"); none != nil || err != nil {
		t.Errorf("read(nope) = %v, %v, want nil, nil", none, err)
	}
}

// TestRecordStoreSeesChangesOnDisk: the store remembers the records it
// read or wrote, and still returns what the disk holds whenever a file was
// replaced, rewritten in place (the same size), removed or corrupted
// behind its back.
func TestRecordStoreSeesChangesOnDisk(t *testing.T) {
	s := newRecordStore(t.TempDir())
	record := func(serial uint64) *recordFile {
		return &recordFile{Record: Record{Name: "web", Source: "https://x/w", Checksum: sumA, VerifyChecksum: sumB, Serial: serial,
			InstalledAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Phase: PhaseInstalled}}
	}
	encode := func(rf *recordFile) []byte {
		data, err := json.MarshalIndent(rf, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return append(data, '\n')
	}
	serial := func(what string, want uint64) {
		t.Helper()
		for range 2 { // from the disk, then as remembered
			got, err := s.read("web")
			if err != nil || got == nil || got.Serial != want {
				t.Fatalf("%s: read(web) = %+v, %v, want serial %d", what, got, err, want)
			}
		}
	}
	if err := s.write(record(1)); err != nil {
		t.Fatal(err)
	}
	serial("written", 1)

	// Replaced by a rename, as another writer would.
	tmp := filepath.Join(s.dir, ".other")
	mustWrite(t, tmp, encode(record(2)))
	if err := os.Rename(tmp, s.path("web")); err != nil {
		t.Fatal(err)
	}
	serial("replaced", 2)

	// Rewritten in place, the same size, its time set apart.
	mustWrite(t, s.path("web"), encode(record(3)))
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(s.path("web"), later, later); err != nil {
		t.Fatal(err)
	}
	serial("rewritten in place", 3)

	// Corrupted: an error naming the file, not the remembered record.
	mustWrite(t, s.path("web"), []byte("{"))
	if got, err := s.read("web"); err == nil || !strings.Contains(err.Error(), s.path("web")) {
		t.Fatalf("corrupted: read(web) = %+v, %v, want an error naming the file", got, err)
	}

	// Removed: none.
	if err := s.write(record(4)); err != nil {
		t.Fatal(err)
	}
	serial("written again", 4)
	if err := os.Remove(s.path("web")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.read("web"); got != nil || err != nil {
		t.Fatalf("removed: read(web) = %+v, %v, want nil, nil", got, err)
	}
	// A caller changing what it read does not change what the next gets.
	if err := s.write(record(5)); err != nil {
		t.Fatal(err)
	}
	got, err := s.read("web")
	if err != nil {
		t.Fatal(err)
	}
	got.Serial = 99
	serial("after a caller changed its copy", 5)
}

// mustWrite writes data to path in place (truncating it).
func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, s := range recordSeeds {
		f.Add([]byte(s.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := decodeRecord(data)
		if err != nil {
			return
		}
		if rf.Phase != PhaseInstalled && rf.Phase != PhaseSwapping {
			t.Fatalf("decodeRecord accepted phase %q", rf.Phase)
		}
		if (rf.Previous == nil) != (rf.PreviousRecord == nil) {
			t.Fatalf("decodeRecord accepted a previous without its record")
		}
		if rf.Undo != nil && (rf.Phase != PhaseSwapping || rf.Undo.Undo != nil || rf.Undo.Name != rf.Name) {
			t.Fatalf("decodeRecord accepted undo %+v", rf.Undo)
		}
		// What decodes, re-encodes to something that decodes the same.
		s := newRecordStore(t.TempDir())
		if err := s.write(rf); err != nil {
			t.Fatal(err)
		}
		again, err := s.read(rf.Name)
		if err != nil {
			t.Fatalf("re-reading an accepted record: %v", err)
		}
		if diff := cmp.Diff(rf, again); diff != "" {
			t.Fatalf("record changed on a round trip:\n%s", diff)
		}
	})
}
