package packer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	ledgerTestDigestA = "1111111111111111111111111111111111111111111111111111111111111111"
	ledgerTestDigestB = "2222222222222222222222222222222222222222222222222222222222222222"
)

func TestFileLedgerPersists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.json")
	l := NewFileLedger(path)
	if rec, ok, err := l.Last(); err != nil || ok {
		t.Fatalf("Last() on a new ledger = %+v, %v, %v, want no record", rec, ok, err)
	}
	want := Record{Serial: 5, Digest: ledgerTestDigestA, Format: FormatV2, Envelope: []byte(`{"payloadType":"x"}`), AcceptedAt: envTestNow}
	if err := l.Accept(want); err != nil {
		t.Fatalf("Accept() error = %v", err)
	}
	// A new FileLedger on the same path (an agent restart) sees the record.
	got, ok, err := NewFileLedger(path).Last()
	if err != nil || !ok {
		t.Fatalf("Last() after reopen = %v, %v, want a record", ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Last() after reopen mismatch (-want +got):\n%s", diff)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("ledger file mode = %v, want 0600", info.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "ledger.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only ledger.json (no temp files)", names)
	}
}

func TestFileLedgerAcceptRules(t *testing.T) {
	rec := func(serial uint64, digest string, f Format) Record {
		return Record{Serial: serial, Digest: digest, Format: f, AcceptedAt: envTestNow}
	}
	tests := []struct {
		name     string
		first    Record
		next     Record
		wantKind error
		wantErr  string
		wantLast Record
	}{
		{name: "newer serial", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(6, ledgerTestDigestB, FormatV2), wantLast: rec(6, ledgerTestDigestB, FormatV2)},
		{name: "same record is a no-op", first: rec(5, ledgerTestDigestA, FormatV2),
			next:     Record{Serial: 5, Digest: ledgerTestDigestA, Format: FormatV2, AcceptedAt: envTestNow.Add(time.Hour)},
			wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "older serial", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(4, ledgerTestDigestB, FormatV2),
			wantKind: ErrReplayed, wantErr: "recording spec in replay ledger: ignored older spec (serial 4 < 5)", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "reused serial", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(5, ledgerTestDigestB, FormatV2),
			wantKind: ErrEquivocation, wantErr: "recording spec in replay ledger: serial 5 reused with different content", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "v1 after v2", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(0, ledgerTestDigestB, FormatV1),
			wantKind: ErrReplayed, wantErr: "recording spec in replay ledger: ignored older spec (serial 0 < 5; v1 specs have no serial)", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "v1 after v1", first: rec(0, ledgerTestDigestA, FormatV1), next: rec(0, ledgerTestDigestB, FormatV1), wantLast: rec(0, ledgerTestDigestB, FormatV1)},
		{name: "v1 envelope is never stored", first: rec(0, ledgerTestDigestA, FormatV1),
			next:     Record{Serial: 0, Digest: ledgerTestDigestB, Format: FormatV1, Envelope: []byte(`{"machines":"secret"}`), AcceptedAt: envTestNow},
			wantLast: rec(0, ledgerTestDigestB, FormatV1)},
		{name: "bad digest", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(6, "ABC", FormatV2),
			wantErr: "recording spec in replay ledger: digest is not 64 lowercase hex characters", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "uppercase digest", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(6, strings.ToUpper("ab"+ledgerTestDigestA[2:]), FormatV2),
			wantErr: "recording spec in replay ledger: digest is not 64 lowercase hex characters", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "unknown format", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(6, ledgerTestDigestB, 0),
			wantErr: "recording spec in replay ledger: format 0 is neither v1 nor v2", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "v2 serial 0", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(0, ledgerTestDigestB, FormatV2),
			wantErr: "recording spec in replay ledger: v2 record has serial 0", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
		{name: "v1 with a serial", first: rec(5, ledgerTestDigestA, FormatV2), next: rec(9, ledgerTestDigestB, FormatV1),
			wantErr: "recording spec in replay ledger: v1 record has serial 9, want 0", wantLast: rec(5, ledgerTestDigestA, FormatV2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewFileLedger(filepath.Join(t.TempDir(), "ledger.json"))
			if err := l.Accept(tt.first); err != nil {
				t.Fatalf("Accept(first) error = %v", err)
			}
			err := l.Accept(tt.next)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Accept(next) error = %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("Accept(next) error = %v, want %q", err, tt.wantErr)
			case tt.wantKind != nil && !errors.Is(err, tt.wantKind):
				t.Errorf("Accept(next) error = %v, want errors.Is(err, %v)", err, tt.wantKind)
			}
			got, _, err := l.Last()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantLast, got); diff != "" {
				t.Errorf("Last() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFileLedgerCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantErr string
	}{
		{name: "empty file", content: "", wantErr: "EOF"},
		{name: "truncated", content: `{"version":1,"last":{"serial":5`, wantErr: "unexpected EOF"},
		{name: "not json", content: "serial=5", wantErr: "invalid character 's' looking for beginning of value"},
		{name: "unknown field", content: `{"version":1,"last":{"serial":5,"digest":"` + ledgerTestDigestA + `","format":"v2","accepted_at":"2026-01-01T00:00:00Z","note":"x"}}`,
			wantErr: `json: unknown field "note"`},
		{name: "version 2", content: `{"version":2,"last":{}}`, wantErr: "version 2, want 1"},
		{name: "missing record", content: `{"version":1}`, wantErr: "format 0 is neither v1 nor v2"},
		{name: "bad format", content: `{"version":1,"last":{"serial":5,"digest":"` + ledgerTestDigestA + `","format":"v9","accepted_at":"2026-01-01T00:00:00Z"}}`,
			wantErr: `decoding envelope format: unknown format "v9", want "v1" or "v2"`},
		{name: "bad digest", content: `{"version":1,"last":{"serial":5,"digest":"xyz","format":"v2","accepted_at":"2026-01-01T00:00:00Z"}}`,
			wantErr: "digest is not 64 lowercase hex characters"},
		{name: "trailing data", content: `{"version":1,"last":{"serial":5,"digest":"` + ledgerTestDigestA + `","format":"v2","accepted_at":"2026-01-01T00:00:00Z"}} x`,
			wantErr: "unexpected data after the JSON value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			l := NewFileLedger(path)
			rec, ok, err := l.Last()
			want := "reading replay ledger " + path + ": replay ledger is corrupt: " + tt.wantErr
			if err == nil || !errors.Is(err, ErrCorruptLedger) || err.Error() != want {
				t.Fatalf("Last() = %+v, %v, %v, want error %q", rec, ok, err, want)
			}
			// Accept must not silently reset a corrupt ledger.
			err = l.Accept(Record{Serial: 1, Digest: ledgerTestDigestB, Format: FormatV2, AcceptedAt: envTestNow})
			if !errors.Is(err, ErrCorruptLedger) {
				t.Errorf("Accept() on a corrupt ledger error = %v, want %v", err, ErrCorruptLedger)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Errorf("corrupt ledger rewritten to %q, want it left alone", got)
			}
		})
	}
}

func TestFileLedgerMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	l := NewFileLedger(filepath.Join(dir, "ledger.json"))
	err := l.Accept(Record{Serial: 1, Digest: ledgerTestDigestA, Format: FormatV2, AcceptedAt: envTestNow})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Accept() into a missing directory error = %v, want %v", err, os.ErrNotExist)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Accept() created %s, want nothing created", dir)
	}
}

func TestFileLedgerUnreadable(t *testing.T) {
	path := t.TempDir() // a directory where the file should be
	_, _, err := NewFileLedger(path).Last()
	if err == nil || errors.Is(err, ErrCorruptLedger) {
		t.Fatalf("Last() on a directory error = %v, want a read error", err)
	}
}

// TestFileLedgerConcurrentAccept races Accepts of serials 1..16: each either
// lands or is refused as older, and the ledger ends at the highest serial.
func TestFileLedgerConcurrentAccept(t *testing.T) {
	l := NewFileLedger(filepath.Join(t.TempDir(), "ledger.json"))
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			digest := fmt.Sprintf("%064x", i+1)
			errs[i] = l.Accept(Record{Serial: uint64(i + 1), Digest: digest, Format: FormatV2, AcceptedAt: envTestNow})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, ErrReplayed) {
			t.Errorf("Accept(serial %d) error = %v, want nil or %v", i+1, err, ErrReplayed)
		}
	}
	last, ok, err := l.Last()
	if err != nil || !ok || last.Serial != n {
		t.Errorf("Last() = serial %d, %v, %v, want serial %d", last.Serial, ok, err, n)
	}
}

// TestFileLedgerCacheFollowsFile checks that the record a FileLedger keeps
// in memory is what reading the file gives, and that a file changed behind
// its back (replaced, corrupted, removed) is read again.
func TestFileLedgerCacheFollowsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	l := NewFileLedger(path)
	local := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("X", 3600))
	if err := l.Accept(Record{Serial: 5, Digest: ledgerTestDigestA, Format: FormatV2, Envelope: []byte("env"), AcceptedAt: local}); err != nil {
		t.Fatal(err)
	}
	cached, _, err := l.Last()
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, err := NewFileLedger(path).Last()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fresh, cached); diff != "" || cached.AcceptedAt.Location().String() != fresh.AcceptedAt.Location().String() {
		t.Errorf("cached record differs from the file's (-file +cached):\n%s", diff)
	}

	// Another writer (a restored backup) replaces the file.
	other := NewFileLedger(path)
	if err := other.Accept(Record{Serial: 9, Digest: ledgerTestDigestB, Format: FormatV2, AcceptedAt: envTestNow}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := l.Last(); err != nil || got.Serial != 9 {
		t.Errorf("Last() after the file was replaced = serial %d, %v; want 9", got.Serial, err)
	}

	// The file is corrupted in place (a new size).
	if err := os.WriteFile(path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Last(); !errors.Is(err, ErrCorruptLedger) {
		t.Errorf("Last() after corruption = %v, want %v", err, ErrCorruptLedger)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.Last(); ok || err != nil {
		t.Errorf("Last() after removal = %v, %v; want no record", ok, err)
	}
}

// BenchmarkFileLedgerLast asks an unchanged ledger for its record, as
// every spec opened does: a stat of the file, not a read.
func BenchmarkFileLedgerLast(b *testing.B) {
	l := NewFileLedger(filepath.Join(b.TempDir(), "ledger.json"))
	if err := l.Accept(Record{Serial: 5, Digest: ledgerTestDigestA, Format: FormatV2, Envelope: make([]byte, 4<<10), AcceptedAt: envTestNow}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if r, ok, err := l.Last(); err != nil || !ok || r.Serial != 5 {
			b.Fatalf("Last() = %+v, %v, %v", r, ok, err)
		}
	}
}
