package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLoadFacts(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    map[string]any
		wantErr string
	}{
		{"json", `{"role": "web", "cpus": 64, "nested": {"a": [1, "b"]}}`, map[string]any{"role": "web", "cpus": 64.0, "os": runtime.GOOS}, ""},
		{"yaml", "role: db\nhostname: pinned\nnested:\n  a: 1\n", map[string]any{"role": "db", "hostname": "pinned", "arch": runtime.GOARCH}, ""},
		{"empty", "", map[string]any{"os": runtime.GOOS}, ""},
		{"list", "- a\n- b\n", nil, "want a JSON object or YAML mapping, got a list"},
		{"broken", "{role: [", nil, "parse facts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := LoadFacts(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadFacts() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadFacts() = %v", err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("LoadFacts()[%q] = %v, want %v", k, got[k], v)
				}
			}
		})
	}
	if _, err := LoadFacts(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadFacts(missing) = nil error, want one")
	}
}

func TestFactsFileCachesUntilChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "facts.json")
	if err := os.WriteFile(path, []byte(`{"v": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ff := NewFactsFile(path, slog.New(slog.DiscardHandler))
	if v := ff.Facts()["v"]; v != 1.0 {
		t.Fatalf("Facts()[v] = %v, want 1", v)
	}
	// Same size and mtime: the cache is served, the file is not re-read.
	st, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte(`{"v": 2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if v := ff.Facts()["v"]; v != 1.0 {
		t.Errorf("Facts()[v] with an unchanged mtime = %v, want the cached 1", v)
	}
	later := st.ModTime().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if v := ff.Facts()["v"]; v != 2.0 {
		t.Errorf("Facts()[v] after the mtime changed = %v, want 2", v)
	}
	// A broken update keeps the last good facts.
	if err := os.WriteFile(path, []byte(`{"v": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, later.Add(time.Second), later.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if v := ff.Facts()["v"]; v != 2.0 {
		t.Errorf("Facts()[v] after a broken update = %v, want the last good 2", v)
	}
	// Callers get copies.
	ff.Facts()["v"] = "mutated"
	if v := ff.Facts()["v"]; v != 2.0 {
		t.Errorf("Facts()[v] after a caller mutated its copy = %v, want 2", v)
	}
}
