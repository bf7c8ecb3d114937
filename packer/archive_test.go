package packer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeTree creates files (path → content) under dir; paths ending in "/"
// are directories. Files under bin/ are made executable.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o600)
		if strings.HasPrefix(p, "bin/") {
			mode = 0o700
		}
		if err := os.WriteFile(full, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

type tarListing struct {
	Name     string
	Type     byte
	Mode     int64
	Size     int64
	Uid, Gid int
	Uname    string
	ModTime  int64
}

func listTar(t *testing.T, data []byte) []tarListing {
	t.Helper()
	tr := tar.NewReader(gzipReader(t, data))
	var out []tarListing
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarListing{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Size, hdr.Uid, hdr.Gid, hdr.Uname + hdr.Gname, hdr.ModTime.Unix()})
	}
}

func TestCreateArchive(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"machine.yaml": "name: web\n",
		"bin/run":      "#!/bin/sh\n",
		"lib/a.txt":    "a",
		"empty/":       "",
	})
	var buf bytes.Buffer
	info, err := CreateArchive(t.Context(), dir, "web", &buf)
	if err != nil {
		t.Fatalf("CreateArchive() error = %v", err)
	}
	sums := Sums{"machine.yaml": hexSum("name: web\n"), "bin/run": hexSum("#!/bin/sh\n"), "lib/a.txt": hexSum("a")}
	sumsData, err := sums.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	wantInfo := ArchiveInfo{
		Name:           "web",
		Checksum:       hex.EncodeToString(sum[:]),
		VerifyChecksum: hexSum(string(sumsData)),
		Size:           int64(buf.Len()),
		Files:          3,
	}
	if diff := cmp.Diff(wantInfo, info); diff != "" {
		t.Errorf("CreateArchive() info mismatch (-want +got):\n%s", diff)
	}
	want := []tarListing{
		{Name: "web/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "web/SHA256SUMS", Type: tar.TypeReg, Mode: 0o644, Size: int64(len(sumsData))},
		{Name: "web/bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "web/bin/run", Type: tar.TypeReg, Mode: 0o755, Size: 10},
		{Name: "web/empty/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "web/lib/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "web/lib/a.txt", Type: tar.TypeReg, Mode: 0o644, Size: 1},
		{Name: "web/machine.yaml", Type: tar.TypeReg, Mode: 0o644, Size: 10},
	}
	if diff := cmp.Diff(want, listTar(t, buf.Bytes())); diff != "" {
		t.Errorf("archive entries mismatch (-want +got):\n%s", diff)
	}

	stage := t.TempDir()
	got, err := ExtractArchive(t.Context(), bytes.NewReader(buf.Bytes()), stage,
		Expect{Name: "web", Checksum: info.Checksum, VerifyChecksum: info.VerifyChecksum}, ExtractOptions{NoSync: true})
	if err != nil {
		t.Fatalf("ExtractArchive(CreateArchive()) error = %v", err)
	}
	if diff := cmp.Diff(sums, got.Sums); diff != "" {
		t.Errorf("extracted SHA256SUMS mismatch (-want +got):\n%s", diff)
	}
	if err := VerifyTree(t.Context(), got.Dir, info.VerifyChecksum); err != nil {
		t.Errorf("VerifyTree(extracted) error = %v", err)
	}
}

func TestCreateArchiveDeterministic(t *testing.T) {
	files := map[string]string{"machine.yaml": "name: web\n", "bin/run": "#!/bin/sh\n", "z/y/x": strings.Repeat("data", 10000)}
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, files)
	writeTree(t, b, files)
	// The second copy differs in everything the archive must not record.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, p := range []string{"machine.yaml", "bin/run", "z/y/x", "z/y", "z"} {
		if err := os.Chtimes(filepath.Join(b, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(b, "machine.yaml"), 0o664); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(b, "bin/run"), os.ModeSetuid|0o711); err != nil {
		t.Fatal(err)
	}
	// A stale SHA256SUMS is replaced, not archived.
	if err := os.WriteFile(filepath.Join(b, SumsFile), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	var outA, outA2, outB bytes.Buffer
	for _, c := range []struct {
		dir string
		out *bytes.Buffer
	}{{a, &outA}, {a, &outA2}, {b, &outB}} {
		if _, err := CreateArchive(t.Context(), c.dir, "web", c.out); err != nil {
			t.Fatalf("CreateArchive(%s) error = %v", c.dir, err)
		}
	}
	if !bytes.Equal(outA.Bytes(), outA2.Bytes()) {
		t.Error("CreateArchive() twice on the same tree gave different bytes")
	}
	if !bytes.Equal(outA.Bytes(), outB.Bytes()) {
		t.Error("CreateArchive() on trees differing only in times, modes and a stale SHA256SUMS gave different bytes")
	}
}

func TestCreateArchiveRejects(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		setup   func(t *testing.T, dir string)
		archive string
		wantErr string
		kind    error
	}{
		{name: "no machine.yaml", files: map[string]string{"bin/run": "x"},
			wantErr: `create archive "web" from {dir}: no machine.yaml`, kind: ErrInvalidArchive},
		{name: "machine.yaml is a directory", files: map[string]string{"machine.yaml/": ""},
			wantErr: `create archive "web" from {dir}: no machine.yaml`, kind: ErrInvalidArchive},
		{name: "symlink", files: map[string]string{"machine.yaml": "x"}, setup: func(t *testing.T, dir string) {
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: `create archive "web" from {dir}: unsafe entry "web/passwd": symlink not allowed`, kind: ErrUnsafeEntry},
		{name: "case collision", files: map[string]string{"machine.yaml": "x", "README": "1", "readme": "2"},
			wantErr: `create archive "web" from {dir}: unsafe entry "web/readme": case-insensitive collision with "web/README"`, kind: ErrUnsafeEntry},
		{name: "collision with SHA256SUMS", files: map[string]string{"machine.yaml": "x", "sha256sums": "1"},
			wantErr: `create archive "web" from {dir}: unsafe entry "web/sha256sums": case-insensitive collision with "web/SHA256SUMS"`, kind: ErrUnsafeEntry},
		{name: "directory named SHA256SUMS", files: map[string]string{"machine.yaml": "x", "SHA256SUMS/": ""},
			wantErr: `create archive "web" from {dir}: unsafe entry "web/SHA256SUMS": directory clashes with a file of the same name`, kind: ErrUnsafeEntry},
		{name: "newline in a name", files: map[string]string{"machine.yaml": "x", "a\nb": "1"},
			wantErr: `create archive "web" from {dir}: unsafe entry "web/a\nb": name contains a control character`, kind: ErrUnsafeEntry},
		{name: "too deep", files: map[string]string{"machine.yaml": "x", strings.Repeat("d/", 15) + "f": "1"},
			wantErr: `create archive "web" from {dir}: unsafe entry "web/` + strings.Repeat("d/", 15) + `f": path deeper than 16 levels`, kind: ErrUnsafeEntry},
		{name: "bad archive name", files: map[string]string{"machine.yaml": "x"}, archive: "../web",
			wantErr: `create archive: invalid archive name "../web": path is not local`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			name := tt.archive
			if name == "" {
				name = "web"
			}
			var buf bytes.Buffer
			_, err := CreateArchive(t.Context(), dir, name, &buf)
			wantErr := strings.ReplaceAll(tt.wantErr, "{dir}", dir)
			if err == nil || err.Error() != wantErr {
				t.Fatalf("CreateArchive() error = %v, want %q", err, wantErr)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("CreateArchive() error %v does not wrap %v", err, tt.kind)
			}
			if buf.Len() != 0 {
				t.Errorf("CreateArchive() wrote %d bytes before failing its checks, want 0", buf.Len())
			}
		})
	}
}

func TestCreateArchiveCanceled(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"machine.yaml": "x"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := CreateArchive(ctx, dir, "web", io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateArchive(canceled) error = %v, want context.Canceled", err)
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestCreateArchiveWriteError(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"machine.yaml": strings.Repeat("x", 1<<20)})
	_, err := CreateArchive(t.Context(), dir, "web", failWriter{})
	if err == nil || !strings.HasSuffix(err.Error(), "disk full") {
		t.Fatalf("CreateArchive(failing writer) error = %v, want disk full", err)
	}
}
