package agent

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDataStorePersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	log := slog.New(slog.DiscardHandler)
	s, err := OpenDataStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("count", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("obj", map[string]any{"a": []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("gone", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("never there"); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
	want := map[string]any{"count": 3.0, "obj": map[string]any{"a": []any{1.0, 2.0}}}
	if diff := cmp.Diff(want, s.All()); diff != "" {
		t.Errorf("All() before reopen (-want +got):\n%s", diff)
	}
	if v, ok := s.Get("count"); !ok || v != 3.0 {
		t.Errorf("Get(count) = %v, %v, want 3, true", v, ok)
	}

	again, err := OpenDataStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again.All()); diff != "" {
		t.Errorf("All() after reopen (-want +got):\n%s", diff)
	}
	st, err := os.Stat(again.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("data file mode = %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only %s (no temp files left)", len(entries), DataFile)
	}
}

func TestDataStoreBadValueChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenDataStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("k", "v"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	if err := s.Put("bad", make(chan int)); err == nil || !strings.Contains(err.Error(), `store machine data "bad"`) {
		t.Errorf("Put(chan) = %v, want an error naming the key", err)
	}
	after, _ := os.ReadFile(s.Path())
	if string(before) != string(after) {
		t.Errorf("data file changed after a failed Put")
	}
	if _, ok := s.Get("bad"); ok {
		t.Errorf("Get(bad) found a value after a failed Put")
	}
}

func TestDataStoreAtomicWriteFailure(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenDataStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("k", "v"); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory where the data file was makes the final
	// rename fail, even for root.
	if err := os.Remove(s.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Path(), "blocker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("k", "new"); err == nil {
		t.Fatal("Put() with an unwritable data file = nil, want an error")
	}
	if v, _ := s.Get("k"); v != "v" {
		t.Errorf("Get(k) after a failed Put = %v, want the old value v", v)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries after a failed Put, want 1 (temp file removed)", len(entries))
	}
}

func TestDataStoreCorruptFileMovedAside(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"truncated", `{"a": 1`},
		{"not an object", `[1, 2]`},
		{"null", `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, DataFile)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			s, err := OpenDataStore(dir, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("OpenDataStore() = %v, want the corrupt file moved aside", err)
			}
			if n := len(s.All()); n != 0 {
				t.Errorf("All() has %d keys, want an empty store", n)
			}
			matches, _ := filepath.Glob(path + ".corrupt-*")
			if len(matches) != 1 {
				t.Fatalf("corrupt copies = %v, want one", matches)
			}
			if b, _ := os.ReadFile(matches[0]); string(b) != tt.content {
				t.Errorf("corrupt copy = %q, want the original %q", b, tt.content)
			}
			if !strings.Contains(logs.String(), "corrupt") {
				t.Errorf("log = %q, want a warning about the corrupt file", logs.String())
			}
			if err := s.Put("fresh", true); err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			b, _ := os.ReadFile(path)
			if err := json.Unmarshal(b, &got); err != nil || got["fresh"] != true {
				t.Errorf("data file after Put = %s, %v, want {fresh: true}", b, err)
			}
		})
	}
}
