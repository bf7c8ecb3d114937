package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/plugins/internal/gen"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunWrites(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "user_plugins.yaml"), filepath.Join(dir, "zz_plugins.go")
	const list = "timer: github.com/mms-io/mms/watchers/timer\n"
	write(t, in, list)
	if err := run([]string{"-in", in, "-out", out}, &bytes.Buffer{}); err != nil {
		t.Fatalf("run: %v", err)
	}
	want, err := gen.Generate([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, out); got != string(want) {
		t.Errorf("run wrote\n%s\nwant\n%s", got, want)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("run wrote mode %v, want 0644", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("run left %d files in %s, want 2 (no temporary files)", len(entries), dir)
	}
}

func TestRunUnchangedNotRewritten(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "user_plugins.yaml"), filepath.Join(dir, "zz_plugins.go")
	const list = "exec: github.com/mms-io/mms/watchers/exec\n"
	write(t, in, list)
	if err := run([]string{"-in", in, "-out", out}, &bytes.Buffer{}); err != nil {
		t.Fatalf("run: %v", err)
	}
	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(out, old, old); err != nil {
		t.Fatal(err)
	}
	write(t, in, "# same plugins, new comment\n"+list)
	if err := run([]string{"-in", in, "-out", out}, &bytes.Buffer{}); err != nil {
		t.Fatalf("run: %v", err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(old) {
		t.Errorf("run rewrote %s (mtime %v) although its content did not change", out, st.ModTime())
	}
}

func TestRunBadInputLeavesOutput(t *testing.T) {
	tests := []struct {
		name    string
		list    string
		wantErr string
	}{
		{"duplicate", "a: example.com/a\na: example.com/b\n", `invalid user_plugins.yaml: line 2: plugin "a" is listed twice (first at line 1)`},
		{"bad path", "a: example.com/a/\n", `invalid user_plugins.yaml: line 1: plugin "a": malformed import path "example.com/a/": trailing slash`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "user_plugins.yaml"), filepath.Join(dir, "zz_plugins.go")
			write(t, in, tt.list)
			write(t, out, "package plugins // previous\n")
			err := run([]string{"-in", in, "-out", out}, &bytes.Buffer{})
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("run(%q) = %v, want %q", tt.list, err, tt.wantErr)
			}
			if got := read(t, out); got != "package plugins // previous\n" {
				t.Errorf("run(%q) changed %s to %q", tt.list, out, got)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	write(t, big, "# "+strings.Repeat("x", gen.MaxSize))
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing input", []string{"-in", filepath.Join(dir, "nope.yaml")}, "open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"too large", []string{"-in", big, "-out", filepath.Join(dir, "out.go")}, "read " + big + ": larger than the 65536 byte limit"},
		{"stray argument", []string{"extra"}, `unexpected arguments ["extra"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args, &bytes.Buffer{})
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("run(%q) = %v, want %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// TestRunUnloadableLeavesOutput lists a package of a module go.mod does not
// require, as after `go mod tidy` ran before `go generate`: run must name
// the entry and the fix, and leave zz_plugins.go as it was, so that the
// module still builds.
func TestRunUnloadableLeavesOutput(t *testing.T) {
	// The default -mod mode, as a newcomer has it: no lookups.
	t.Setenv("GOFLAGS", "")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "user_plugins.yaml"), filepath.Join(dir, "zz_plugins.go")
	write(t, in, "timer: github.com/mms-io/mms/watchers/timer\nghost: example.com/ghost\n")
	write(t, out, "package plugins // previous\n")
	err := run([]string{"-in", in, "-out", out}, &bytes.Buffer{})
	want := `line 2: plugin "ghost": cannot load package example.com/ghost: no required module provides package example.com/ghost; to add it: go get example.com/ghost
zz_plugins.go is unchanged; require each plugin's module in go.mod (go get, or go mod edit -require and -replace for a local checkout), then run go generate ./plugins before go mod tidy, which drops a requirement that no file imports yet`
	if err == nil || err.Error() != want {
		t.Errorf("run = %v, want\n%s", err, want)
	}
	if got := read(t, out); got != "package plugins // previous\n" {
		t.Errorf("run changed %s to %q", out, got)
	}
}
