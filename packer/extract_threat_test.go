package packer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// withBase returns a valid archive of machine m followed by extra entries.
func withBase(extra ...tarEntry) []tarEntry {
	return append(machineTar(testMachineFiles), extra...)
}

// threatAbsName is the absolute entry name of the absolute-path case; the
// test checks that it never appears at the file system root.
const threatAbsName = "/mms-packer-threat-abs"

// sparseBombEntries is the PAX (GNU sparse 1.0) bomb: a ~200-byte tar.gz
// whose single entry reads as a 4 GiB regular file of zeros.
func sparseBombEntries() []tarEntry {
	sparseMap := []byte("1\n0\n1\n")
	body := append(pad512(sparseMap), 'x')
	return []tarEntry{dirEntry("m/"), {raw: rawPAXEntry([][2]string{
		{"GNU.sparse.major", "1"},
		{"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", "m/bomb"},
		{"GNU.sparse.realsize", "4294967296"},
	}, "m/GNUSparseFile.0/bomb", body)}}
}

// manyEmptyFiles returns m/ plus n empty files.
func manyEmptyFiles(n int) []tarEntry {
	entries := []tarEntry{dirEntry("m/")}
	for i := range n {
		entries = append(entries, regEntry(fmt.Sprintf("m/f%05d", i), ""))
	}
	return entries
}

// zeroReader reads zeros forever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// writeGzipBomb writes, streaming, a tar.gz holding m/ and m/zero, 1 GiB of
// zeros (about 1 MiB compressed), and returns its path.
func writeGzipBomb(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bomb.tgz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for _, hdr := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "m/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "m/zero", Mode: 0o644, Size: 1 << 30},
	} {
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.CopyN(tw, zeroReader{}, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// threatCase is one row of the archive part of the threat table
// (security.md §7): bad input, the exact error, and nothing lost.
type threatCase struct {
	name    string
	entries []tarEntry               // the archive, unless bomb is set
	bomb    bool                     // use the 1 GiB gzip bomb instead
	mutate  func(*Expect)            // tamper with the pins
	limits  Limits                   // zero: defaults
	wantErr string                   // full message; {sum} and {sums} are the real checksums
	kind    error                    // sentinel the error wraps
	check   func(*testing.T, string) // for accepted archives: inspect the machine dir
}

func TestExtractArchiveThreats(t *testing.T) {
	tests := []threatCase{
		{name: "traversal", entries: withBase(regEntry("../x", "evil")),
			wantErr: `unsafe entry "../x": path is not local`, kind: ErrUnsafeEntry},
		{name: "traversal inside the top dir", entries: withBase(regEntry("m/../../x", "evil")),
			wantErr: `unsafe entry "m/../../x": path is not local`, kind: ErrUnsafeEntry},
		{name: "absolute path", entries: withBase(regEntry(threatAbsName, "evil")),
			wantErr: `unsafe entry "/mms-packer-threat-abs": absolute path not allowed`, kind: ErrUnsafeEntry},
		{name: "symlink", entries: withBase(typeEntry("m/link", tar.TypeSymlink, "/etc/passwd")),
			wantErr: `unsafe entry "m/link": symlink not allowed`, kind: ErrUnsafeEntry},
		{name: "symlink to a sibling", entries: withBase(typeEntry("m/link", tar.TypeSymlink, "../../sibling"), regEntry("m/link/x", "evil")),
			wantErr: `unsafe entry "m/link": symlink not allowed`, kind: ErrUnsafeEntry},
		{name: "hard link", entries: withBase(typeEntry("m/hard", tar.TypeLink, "/etc/passwd")),
			wantErr: `unsafe entry "m/hard": hard link not allowed`, kind: ErrUnsafeEntry},
		{name: "character device", entries: withBase(typeEntry("m/null", tar.TypeChar, "")),
			wantErr: `unsafe entry "m/null": character device not allowed`, kind: ErrUnsafeEntry},
		{name: "block device", entries: withBase(typeEntry("m/sda", tar.TypeBlock, "")),
			wantErr: `unsafe entry "m/sda": block device not allowed`, kind: ErrUnsafeEntry},
		{name: "FIFO", entries: withBase(typeEntry("m/fifo", tar.TypeFifo, "")),
			wantErr: `unsafe entry "m/fifo": FIFO not allowed`, kind: ErrUnsafeEntry},
		{name: "setuid and odd modes are normalized", entries: []tarEntry{
			dirEntry("m/"),
			regEntry("m/SHA256SUMS", sumsText(map[string]string{"machine.yaml": "x", "suid": "s", "ww": "w"})),
			modeEntry("m/machine.yaml", "x", 0o600),
			modeEntry("m/suid", "s", 0o4777),
			modeEntry("m/ww", "w", 0o666),
			{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "m/d/", Mode: 0o1777}},
		}, check: func(t *testing.T, dir string) {
			for p, want := range map[string]os.FileMode{"machine.yaml": 0o644, "suid": 0o755, "ww": 0o644, "d": os.ModeDir | 0o755, ".": os.ModeDir | 0o755} {
				fi, err := os.Lstat(filepath.Join(dir, p))
				if err != nil || fi.Mode() != want {
					t.Errorf("mode of %s = %v (%v), want %v", p, fi.Mode(), err, want)
				}
			}
		}},
		{name: "duplicate entry", entries: withBase(regEntry("m/a", "1"), regEntry("m/a", "2")),
			wantErr: `unsafe entry "m/a": duplicate entry`, kind: ErrUnsafeEntry},
		{name: "case collision", entries: withBase(regEntry("m/A", "1"), regEntry("m/a", "2")),
			wantErr: `unsafe entry "m/a": case-insensitive collision with "m/A"`, kind: ErrUnsafeEntry},
		{name: "case collision of directories", entries: withBase(regEntry("m/D/x", "1"), regEntry("m/d/y", "2")),
			wantErr: `unsafe entry "m/d/y": case-insensitive collision with "m/D"`, kind: ErrUnsafeEntry},
		{name: "unicode normalization collision", entries: withBase(regEntry("m/caf\u00e9", "1"), regEntry("m/cafe\u0301", "2")),
			wantErr: "unsafe entry \"m/cafe\u0301\": case-insensitive collision with \"m/caf\u00e9\"", kind: ErrUnsafeEntry},
		{name: "gzip bomb over the per-file cap", bomb: true,
			wantErr: `entry "m/zero" is 1073741824 bytes, over the 64MiB per-file limit`, kind: ErrArchiveTooLarge},
		{name: "gzip bomb over the total cap", bomb: true, limits: Limits{MaxFileSize: 2 << 30},
			wantErr: `uncompressed size exceeds 256MiB at entry "m/zero"`, kind: ErrArchiveTooLarge},
		{name: "PAX sparse bomb", entries: sparseBombEntries(),
			wantErr: `unsafe entry "m/bomb": sparse entries not allowed`, kind: ErrUnsafeEntry},
		{name: "too many entries", entries: manyEmptyFiles(20_000),
			wantErr: `too many entries: more than 10000`, kind: ErrArchiveTooLarge},
		{name: "file not listed in SHA256SUMS", entries: withBase(regEntry("m/evil.sh", "rm -rf /")),
			wantErr: `file not listed in SHA256SUMS: m/evil.sh`, kind: ErrSumsMismatch},
		{name: "empty SHA256SUMS", entries: []tarEntry{
			dirEntry("m/"), regEntry("m/SHA256SUMS", ""), regEntry("m/machine.yaml", "x"), regEntry("m/a", "a"), regEntry("m/b", "b"),
		}, wantErr: `SHA256SUMS lists 0 of 3 files`, kind: ErrSumsMismatch},
		{name: "wrong archive sha256", entries: machineTar(testMachineFiles),
			mutate:  func(e *Expect) { e.Checksum = hexSum("another archive") },
			wantErr: "sha256 mismatch: got {sum}, want " + hexSum("another archive"), kind: ErrChecksumMismatch},
		{name: "wrong archive that also fails to extract: the checksum is the cause", entries: withBase(regEntry("x/a", "evil")),
			mutate:  func(e *Expect) { e.Checksum = hexSum("another archive") },
			wantErr: "sha256 mismatch: got {sum}, want " + hexSum("another archive") + ` (extracting it failed too: unsafe entry "x/a": outside the top-level directory "m")`, kind: ErrChecksumMismatch},
		{name: "wrong SHA256SUMS sha256", entries: machineTar(testMachineFiles),
			mutate:  func(e *Expect) { e.VerifyChecksum = hexSum("another sums") },
			wantErr: "SHA256SUMS sha256 mismatch: got {sums}, want " + hexSum("another sums"), kind: ErrChecksumMismatch},
		{name: "missing machine.yaml", entries: machineTar(map[string]string{"bin/run": "x"}),
			wantErr: `archive has no m/machine.yaml`, kind: ErrInvalidArchive},
		{name: "entry outside the top dir", entries: withBase(regEntry("x/a", "evil")),
			wantErr: `unsafe entry "x/a": outside the top-level directory "m"`, kind: ErrUnsafeEntry},
		{name: "two top-level dirs", entries: withBase(dirEntry("n/"), regEntry("n/machine.yaml", "name: n\n")),
			wantErr: `unsafe entry "n/": outside the top-level directory "m"`, kind: ErrUnsafeEntry},
		{name: "file before its parent dir entry", entries: []tarEntry{
			regEntry("m/SHA256SUMS", sumsText(map[string]string{"machine.yaml": "x", "sub/deep/f": "f"})),
			regEntry("m/sub/deep/f", "f"),
			regEntry("m/machine.yaml", "x"),
			dirEntry("m/sub/deep/"),
			dirEntry("m/sub/"),
			dirEntry("m/"),
		}, check: func(t *testing.T, dir string) {
			if got, err := os.ReadFile(filepath.Join(dir, "sub/deep/f")); err != nil || string(got) != "f" {
				t.Errorf("sub/deep/f = %q, %v, want %q", got, err, "f")
			}
		}},
	}
	var bombPath string
	outer := t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			var r io.Reader
			var want Expect
			if tt.bomb {
				if bombPath == "" {
					bombPath = writeGzipBomb(outer)
				}
				r, want = openPinned(t, bombPath)
			} else {
				data := tgz(t, tt.entries...)
				r, want = strings.NewReader(string(data)), expectFor(data, tt.entries)
			}
			real := want
			if tt.mutate != nil {
				tt.mutate(&want)
			}
			got, err := ExtractArchive(t.Context(), r, sb.stage, want, ExtractOptions{Limits: tt.limits, NoSync: true})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ExtractArchive() error = %v, want nil", err)
				}
				sb.check(t, false)
				tt.check(t, got.Dir)
				return
			}
			wantErr := `extract archive "m": ` + strings.NewReplacer("{sum}", real.Checksum, "{sums}", real.VerifyChecksum).Replace(tt.wantErr)
			if err == nil || err.Error() != wantErr {
				t.Fatalf("ExtractArchive() error = %v, want %q", err, wantErr)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("ExtractArchive() error %v does not wrap %v", err, tt.kind)
			}
			sb.check(t, true)
			if _, err := os.Lstat(threatAbsName); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lstat(%s) = %v, want not exist", threatAbsName, err)
			}
		})
	}
}

// openPinned opens the archive file p and pins it as machine m (with a
// SHA256SUMS checksum that cannot matter: the archive fails before).
func openPinned(t *testing.T, p string) (io.Reader, Expect) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f, Expect{Name: "m", Checksum: hex.EncodeToString(h.Sum(nil)), VerifyChecksum: hexSum("")}
}

func TestSparseBombIsTiny(t *testing.T) {
	data := tgz(t, sparseBombEntries()...)
	if len(data) > 300 {
		t.Errorf("sparse bomb is %d bytes compressed, want a few hundred", len(data))
	}
	tr := tar.NewReader(gzipReader(t, data))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "m/bomb" || hdr.Typeflag != tar.TypeReg || hdr.Size != 1<<32 {
		t.Errorf("sparse bomb header = %q %q %d, want a 4 GiB regular file m/bomb", hdr.Name, hdr.Typeflag, hdr.Size)
	}
}

func gzipReader(t *testing.T, data []byte) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return zr
}

// TestExtractArchiveCorruptDownload flips bytes in the middle of a good
// archive, as a broken mirror or a truncated-then-resumed download would:
// the error is the checksum mismatch (the cause), not the gzip or tar error
// extraction hit first, and the stage stays empty.
func TestExtractArchiveCorruptDownload(t *testing.T) {
	entries := machineTar(testMachineFiles)
	data := tgz(t, entries...)
	want := expectFor(data, entries)
	bad := slices.Clone(data)
	for i := len(bad) / 2; i < len(bad)/2+16 && i < len(bad); i++ {
		bad[i] ^= 0xff
	}
	sb := newSandbox(t)
	_, err := ExtractArchive(t.Context(), bytes.NewReader(bad), sb.stage, want, ExtractOptions{NoSync: true})
	if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), "sha256 mismatch: got ") || !strings.Contains(err.Error(), "want "+want.Checksum) {
		t.Fatalf("ExtractArchive(corrupted) error = %v, want a sha256 mismatch against %s", err, want.Checksum)
	}
	sb.check(t, true)
}
