package packer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestExtractArchive(t *testing.T) {
	entries := machineTar(testMachineFiles)
	data := tgz(t, entries...)
	sb := newSandbox(t)
	got, err := ExtractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, entries), ExtractOptions{})
	if err != nil {
		t.Fatalf("ExtractArchive() error = %v", err)
	}
	sb.check(t, false)
	wantSums := Sums{}
	for p, body := range testMachineFiles {
		wantSums[p] = hexSum(body)
	}
	want := &Extracted{
		Dir:         filepath.Join(sb.stage, "m"),
		Sums:        wantSums,
		Files:       3,
		Size:        int64(len(sumsText(testMachineFiles)) + len("name: m\nversion: 1.0.0\n#!/bin/sh\necho hi\nhello")),
		ArchiveSize: int64(len(data)),
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(Extracted{})); diff != "" {
		t.Errorf("ExtractArchive() mismatch (-want +got):\n%s", diff)
	}
	for p, body := range testMachineFiles {
		b, err := os.ReadFile(filepath.Join(got.Dir, p))
		if err != nil || string(b) != body {
			t.Errorf("ReadFile(%s) = %q, %v, want %q", p, b, err, body)
		}
	}
	if fi, err := os.Stat(filepath.Join(got.Dir, "bin/run")); err != nil || fi.Mode() != 0o755 {
		t.Errorf("mode of bin/run = %v, %v, want 0755", fi.Mode(), err)
	}
	if names := readDirNames(t, sb.stage); !cmp.Equal(names, []string{"m"}) {
		t.Errorf("stage holds %q, want [m]", names)
	}
}

func TestExtractArchiveAccepts(t *testing.T) {
	files := map[string]string{"machine.yaml": "x", "a": "a"}
	sums := sumsText(files)
	tests := []struct {
		name    string
		entries []tarEntry
		pad     int // extra zero bytes after the tar end
	}{
		{name: "dot slash names (tar -C dir .)", entries: []tarEntry{
			dirEntry("./"), dirEntry("./m/"), regEntry("./m/SHA256SUMS", sums), regEntry("./m/machine.yaml", "x"), regEntry("./m/a", "a"),
		}},
		{name: "no directory entries", entries: []tarEntry{
			regEntry("m/SHA256SUMS", sums), regEntry("m/machine.yaml", "x"), regEntry("m/a", "a"),
		}},
		{name: "git archive global header", entries: []tarEntry{
			{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "0123abc"}}},
			dirEntry("m/"), regEntry("m/SHA256SUMS", sums), regEntry("m/machine.yaml", "x"), regEntry("m/a", "a"),
		}},
		{name: "SHA256SUMS last", entries: []tarEntry{
			dirEntry("m/"), regEntry("m/machine.yaml", "x"), regEntry("m/a", "a"), regEntry("m/SHA256SUMS", sums),
		}},
		{name: "record padding after the tar end", pad: 10240, entries: machineTar(files)},
		{name: "owners, times and xattrs are ignored", entries: []tarEntry{
			dirEntry("m/"), regEntry("m/SHA256SUMS", sums), regEntry("m/machine.yaml", "x"),
			{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "m/a", Size: 1, Mode: 0o644, Uid: 1234, Gid: 99, Uname: "evil", Gname: "evil",
				PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}}, body: "a"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := append(tarBytes(t, tt.entries), make([]byte, tt.pad)...)
			data := gzipBytes(t, raw)
			sb := newSandbox(t)
			got, err := ExtractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, tt.entries), ExtractOptions{NoSync: true})
			if err != nil {
				t.Fatalf("ExtractArchive() error = %v, want nil", err)
			}
			sb.check(t, false)
			if b, err := os.ReadFile(filepath.Join(got.Dir, "a")); err != nil || string(b) != "a" {
				t.Errorf("ReadFile(a) = %q, %v, want %q", b, err, "a")
			}
		})
	}
}

func TestExtractArchiveRejects(t *testing.T) {
	files := map[string]string{"machine.yaml": "x", "a": "a"}
	valid := machineTar(files)
	validTar := tarBytes(t, valid)
	gz := func(b []byte) func(*testing.T) []byte { return func(t *testing.T) []byte { return gzipBytes(t, b) } }
	ents := func(e ...tarEntry) func(*testing.T) []byte { return func(t *testing.T) []byte { return tgz(t, e...) } }
	tests := []struct {
		name    string
		data    func(*testing.T) []byte
		pin     []tarEntry // entries whose SHA256SUMS to pin; valid when nil
		limits  Limits
		wantErr string
		kind    error
	}{
		{name: "not gzip", data: func(*testing.T) []byte { return validTar },
			wantErr: "invalid archive: gzip: invalid header", kind: ErrInvalidArchive},
		{name: "truncated", data: func(t *testing.T) []byte { d := gzipBytes(t, validTar); return d[:len(d)/2] },
			wantErr: "invalid archive: unexpected EOF", kind: ErrInvalidArchive},
		{name: "garbage after the gzip stream", data: func(t *testing.T) []byte { return append(gzipBytes(t, validTar), "junk"...) },
			wantErr: "trailing data after the gzip stream", kind: ErrInvalidArchive},
		{name: "second gzip member", data: func(t *testing.T) []byte { return append(gzipBytes(t, validTar), gzipBytes(t, []byte("x"))...) },
			wantErr: "trailing data after the gzip stream", kind: ErrInvalidArchive},
		{name: "data after the tar end", data: gz(append(bytes.Clone(validTar), "#!/bin/sh\n"...)),
			wantErr: "trailing data after the end of the tar archive", kind: ErrInvalidArchive},
		{name: "too much padding", data: gz(append(bytes.Clone(validTar), make([]byte, 2<<20)...)),
			wantErr: "trailing data after the end of the tar archive", kind: ErrInvalidArchive},
		{name: "corrupt tar header", data: gz(append(bytes.Repeat([]byte{'x'}, 512), make([]byte, 1024)...)),
			wantErr: "invalid archive: archive/tar: invalid tar header", kind: ErrInvalidArchive},
		{name: "missing SHA256SUMS", data: ents(dirEntry("m/"), regEntry("m/machine.yaml", "x")),
			wantErr: "archive has no m/SHA256SUMS", kind: ErrInvalidArchive},
		{name: "unparsable SHA256SUMS", data: ents(regEntry("m/SHA256SUMS", "nonsense\n"), regEntry("m/machine.yaml", "x")),
			pin:     []tarEntry{regEntry("m/SHA256SUMS", "nonsense\n")},
			wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`, kind: ErrInvalidSums},
		{name: "listed file missing", data: ents(regEntry("m/SHA256SUMS", sumsText(files)), regEntry("m/machine.yaml", "x")),
			wantErr: "file listed in SHA256SUMS is missing: m/a", kind: ErrSumsMismatch},
		{name: "content differs", data: ents(regEntry("m/SHA256SUMS", sumsText(files)), regEntry("m/machine.yaml", "x"), regEntry("m/a", "b")),
			wantErr: "sha256 mismatch for m/a: got " + digestB + ", want " + digestA, kind: ErrSumsMismatch},
		{name: "every mismatch reported", data: ents(regEntry("m/SHA256SUMS", sumsText(files)), regEntry("m/machine.yaml", "y"), regEntry("m/z", "z")),
			wantErr: "file not listed in SHA256SUMS: m/z\nfile listed in SHA256SUMS is missing: m/a\nsha256 mismatch for m/machine.yaml: got " +
				hexSum("y") + ", want " + hexSum("x"), kind: ErrSumsMismatch},
		{name: "top-level file", data: ents(regEntry("m", "x")),
			wantErr: `unsafe entry "m": top-level entry must be a directory`, kind: ErrUnsafeEntry},
		{name: "file then directory", data: ents(regEntry("m/a", "x"), dirEntry("m/a/")),
			wantErr: `unsafe entry "m/a": directory clashes with a file of the same name`, kind: ErrUnsafeEntry},
		{name: "directory then file", data: ents(regEntry("m/a/b", "x"), regEntry("m/a", "x")),
			wantErr: `unsafe entry "m/a": file clashes with a directory of the same name`, kind: ErrUnsafeEntry},
		{name: "file under a file", data: ents(regEntry("m/a", "x"), regEntry("m/a/b", "x")),
			wantErr: `unsafe entry "m/a/b": parent "m/a" is a file`, kind: ErrUnsafeEntry},
		{name: "duplicate directory", data: ents(dirEntry("m/"), dirEntry("m/d/"), dirEntry("m/d")),
			wantErr: `unsafe entry "m/d": duplicate entry`, kind: ErrUnsafeEntry},
		{name: "name too long", data: ents(regEntry("m/"+strings.Repeat("a", 254), "x")),
			wantErr: `unsafe entry "m/` + strings.Repeat("a", 254) + `": name longer than 255 bytes`, kind: ErrUnsafeEntry},
		{name: "too deep", data: ents(regEntry("m"+strings.Repeat("/d", 16), "x")),
			wantErr: `unsafe entry "m` + strings.Repeat("/d", 16) + `": path deeper than 16 levels`, kind: ErrUnsafeEntry},
		{name: "control character", data: ents(regEntry("m/a\x1b[31m", "x")),
			wantErr: `unsafe entry "m/a\x1b[31m": name contains a control character`, kind: ErrUnsafeEntry},
		{name: "backslash", data: ents(regEntry(`m/..\..\x`, "x")),
			wantErr: `unsafe entry "m/..\\..\\x": name contains a backslash`, kind: ErrUnsafeEntry},
		{name: "invalid UTF-8", data: ents(regEntry("m/\xff", "x")),
			wantErr: `unsafe entry "m/\xff": name is not valid UTF-8`, kind: ErrUnsafeEntry},
		{name: "unclean path", data: ents(regEntry("m/./a", "x")),
			wantErr: `unsafe entry "m/./a": path is not clean`, kind: ErrUnsafeEntry},
		{name: "old GNU sparse type", data: func(t *testing.T) []byte {
			return gzipBytes(t, append(rawHeaderMagic("m/s", tar.TypeGNUSparse, 0, "ustar  \x00"), make([]byte, 1024)...))
		}, wantErr: `unsafe entry "m/s": sparse entry not allowed`, kind: ErrUnsafeEntry},
		{name: "global header with a path", data: ents(tarEntry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"path": "../x"}}}),
			wantErr: `unsafe entry "../x": global PAX header record "path" not allowed`, kind: ErrUnsafeEntry},
		{name: "over the compressed cap", data: gz(validTar), limits: Limits{MaxArchiveSize: 100},
			wantErr: "compressed archive exceeds 100 bytes", kind: ErrArchiveTooLarge},
		{name: "over the entry cap", data: gz(validTar), limits: Limits{MaxEntries: 2},
			wantErr: "too many entries: more than 2", kind: ErrArchiveTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data(t)
			pin := tt.pin
			if pin == nil {
				pin = valid
			}
			sb := newSandbox(t)
			_, err := ExtractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, pin), ExtractOptions{Limits: tt.limits, NoSync: true})
			wantErr := `extract archive "m": ` + tt.wantErr
			if err == nil || err.Error() != wantErr {
				t.Fatalf("ExtractArchive() error = %v, want %q", err, wantErr)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("ExtractArchive() error %v does not wrap %v", err, tt.kind)
			}
			sb.check(t, true)
		})
	}
}

func TestExtractArchiveEntryError(t *testing.T) {
	data := tgz(t, withBase(typeEntry("m/link", tar.TypeSymlink, "/"))...)
	sb := newSandbox(t)
	_, err := ExtractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, nil), ExtractOptions{NoSync: true})
	entryErr, ok := errors.AsType[*EntryError](err)
	if !ok || entryErr.Entry != "m/link" || entryErr.Kind != ErrUnsafeEntry {
		t.Fatalf("ExtractArchive() error = %#v, want an *EntryError for m/link", err)
	}
}

func TestExtractArchiveBadCall(t *testing.T) {
	data := tgz(t, machineTar(testMachineFiles)...)
	good := expectFor(data, machineTar(testMachineFiles))
	tests := []struct {
		name    string
		mutate  func(*Expect)
		stage   func(sb *sandbox) string
		wantErr string
	}{
		{name: "name with a slash", mutate: func(e *Expect) { e.Name = "a/b" },
			wantErr: `extract archive: invalid archive name "a/b": must be one path element not starting with a dot`},
		{name: "dot name", mutate: func(e *Expect) { e.Name = ".." },
			wantErr: `extract archive: invalid archive name "..": path is not local`},
		{name: "short checksum", mutate: func(e *Expect) { e.Checksum = "abc" },
			wantErr: `extract archive: expected archive checksum "abc" is not 64 hex digits`},
		{name: "empty verify checksum", mutate: func(e *Expect) { e.VerifyChecksum = "" },
			wantErr: `extract archive: expected SHA256SUMS checksum "" is not 64 hex digits`},
		{name: "missing stage", stage: func(sb *sandbox) string { return filepath.Join(sb.parent, "nope") },
			wantErr: `extract archive "m": open stage: openat nope: no such file or directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			want := good
			if tt.mutate != nil {
				tt.mutate(&want)
			}
			stage := sb.stage
			if tt.stage != nil {
				stage = tt.stage(sb)
			}
			_, err := ExtractArchive(t.Context(), bytes.NewReader(data), stage, want, ExtractOptions{NoSync: true})
			if err == nil || !strings.HasPrefix(err.Error(), strings.Split(tt.wantErr, "openat")[0]) {
				t.Fatalf("ExtractArchive() error = %v, want %q", err, tt.wantErr)
			}
			sb.check(t, true)
		})
	}
}

func TestExtractArchiveStageNotEmpty(t *testing.T) {
	data := tgz(t, machineTar(testMachineFiles)...)
	sb := newSandbox(t)
	keep := filepath.Join(sb.stage, "keep")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ExtractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, machineTar(testMachineFiles)), ExtractOptions{NoSync: true})
	if err == nil || !strings.HasSuffix(err.Error(), ": not empty") {
		t.Fatalf("ExtractArchive() error = %v, want stage not empty", err)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
		t.Errorf("stage content = %q, %v, want it untouched", b, err)
	}
}

func TestExtractArchiveUppercasePins(t *testing.T) {
	entries := machineTar(testMachineFiles)
	data := tgz(t, entries...)
	want := expectFor(data, entries)
	want.Checksum = strings.ToUpper(want.Checksum)
	want.VerifyChecksum = strings.ToUpper(want.VerifyChecksum)
	if _, err := ExtractArchive(t.Context(), bytes.NewReader(data), t.TempDir(), want, ExtractOptions{NoSync: true}); err != nil {
		t.Fatalf("ExtractArchive() with uppercase pins error = %v", err)
	}
}

func TestExtractArchiveReadError(t *testing.T) {
	entries := machineTar(testMachineFiles)
	data := tgz(t, entries...)
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(boom))
	sb := newSandbox(t)
	_, err := ExtractArchive(t.Context(), r, sb.stage, expectFor(data, entries), ExtractOptions{NoSync: true})
	if !errors.Is(err, boom) || err.Error() != `extract archive "m": read archive: connection reset` {
		t.Fatalf("ExtractArchive() error = %v, want the read error", err)
	}
	sb.check(t, true)
}

// cancelReader cancels a context once it has served its first read.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 64)])
	c.cancel()
	return n, err
}

func TestExtractArchiveCanceled(t *testing.T) {
	entries := machineTar(testMachineFiles)
	data := tgz(t, entries...)
	ctx, cancel := context.WithCancel(t.Context())
	sb := newSandbox(t)
	_, err := ExtractArchive(ctx, &cancelReader{r: bytes.NewReader(data), cancel: cancel}, sb.stage, expectFor(data, entries), ExtractOptions{NoSync: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ExtractArchive() error = %v, want context.Canceled", err)
	}
	sb.check(t, true)
}
