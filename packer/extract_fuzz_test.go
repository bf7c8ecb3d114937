package packer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// fuzzLimits keep one fuzz execution small.
var fuzzLimits = Limits{MaxArchiveSize: 1 << 20, MaxTotalSize: 1 << 20, MaxFileSize: 256 << 10, MaxEntries: 200}

// fuzzTarSeeds returns uncompressed tar streams from the table tests: valid
// archives and every kind of hostile one small enough for a corpus.
func fuzzTarSeeds(t testing.TB) [][]byte {
	files := map[string]string{"machine.yaml": "x", "a": "a"}
	sets := [][]tarEntry{
		machineTar(testMachineFiles),
		machineTar(files),
		withBase(regEntry("../x", "evil")),
		withBase(regEntry(threatAbsName, "evil")),
		withBase(typeEntry("m/link", tar.TypeSymlink, "../../sibling"), regEntry("m/link/x", "evil")),
		withBase(typeEntry("m/hard", tar.TypeLink, "m/machine.yaml")),
		withBase(typeEntry("m/null", tar.TypeChar, "")),
		withBase(typeEntry("m/fifo", tar.TypeFifo, "")),
		withBase(modeEntry("m/suid", "s", 0o4777)),
		withBase(regEntry("m/a", "1"), regEntry("m/a", "2")),
		withBase(regEntry("m/A", "1"), regEntry("m/a", "2")),
		withBase(regEntry("m/a", "1"), regEntry("m/a/b", "2")),
		withBase(regEntry("m/evil.sh", "x")),
		withBase(dirEntry("n/"), regEntry("n/machine.yaml", "x")),
		sparseBombEntries(),
		{dirEntry("./"), dirEntry("./m/"), regEntry("./m/SHA256SUMS", sumsText(files)), regEntry("./m/machine.yaml", "x"), regEntry("./m/a", "a")},
		{regEntry("m/SHA256SUMS", sumsText(files)), regEntry("m/a", "a"), regEntry("m/machine.yaml", "x"), dirEntry("m/")},
		{dirEntry("m/"), regEntry("m/SHA256SUMS", ""), regEntry("m/machine.yaml", "x")},
	}
	var seeds [][]byte
	for _, entries := range sets {
		seeds = append(seeds, tarBytes(t, entries))
	}
	return append(seeds,
		append(rawHeaderMagic("m/s", tar.TypeGNUSparse, 0, "ustar  \x00"), make([]byte, 1024)...),
		append(tarBytes(t, machineTar(files)), "#!/bin/sh\n"...),
	)
}

// fuzzSeeds returns the tar seeds gzipped, plus gzip-level oddities.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, tr := range fuzzTarSeeds(t) {
		seeds = append(seeds, gzipBytes(t, tr))
	}
	valid := gzipBytes(t, tarBytes(t, machineTar(testMachineFiles)))
	return append(seeds,
		append(bytes.Clone(valid), "junk"...),
		append(bytes.Clone(valid), valid...),
		valid[:len(valid)/2],
		[]byte{},
	)
}

// fuzzPinSums returns the sha256 of the first entry named m/SHA256SUMS
// (after normalization) in a tar.gz, reading at most 1 MiB, so the fuzzer
// can reach the code after the pin checks. It returns the empty-file hash
// when there is none.
func fuzzPinSums(data []byte) string {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return hexSum("")
	}
	tr := tar.NewReader(io.LimitReader(zr, 1<<20))
	for range 300 {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if archiveNormalizeName(hdr.Name) == "m/"+SumsFile {
			h := sha256.New()
			if _, err := io.Copy(h, io.LimitReader(tr, 1<<20)); err != nil {
				break
			}
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	return hexSum("")
}

// FuzzExtract feeds arbitrary bytes to ExtractArchive as a tar.gz. The
// archive checksum is pinned to the input and the SHA256SUMS checksum to
// whatever m/SHA256SUMS holds, so valid-looking inputs reach verification.
// Oracle: no panic; nothing appears outside the stage (a sibling canary
// directory stays empty); a failure wraps a sentinel and leaves the stage
// empty; a success holds only regular files and directories of mode 0755
// or less, passes VerifyTree and has machine.yaml.
func FuzzExtract(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	run := fuzzExtractRunner(f)
	f.Fuzz(func(t *testing.T, data []byte) { run(t, data) })
}

// FuzzExtractTar is FuzzExtract with the input gzipped by the target, so
// mutations explore the tar layer and the extraction rules rather than the
// inflate decoder.
func FuzzExtractTar(f *testing.F) {
	for _, seed := range fuzzTarSeeds(f) {
		f.Add(seed)
	}
	run := fuzzExtractRunner(f)
	f.Fuzz(func(t *testing.T, data []byte) { run(t, gzipBytes(t, data)) })
}

// fuzzExtractRunner returns the body shared by the extraction fuzz targets.
// Every execution reuses the same paths (removed afterwards): random
// temporary names would make coverage differ from run to run.
func fuzzExtractRunner(f *testing.F) func(*testing.T, []byte) {
	parent := filepath.Join(f.TempDir(), "run")
	stage, sibling := filepath.Join(parent, "stage"), filepath.Join(parent, "sibling")
	return func(t *testing.T, data []byte) {
		for _, d := range []string{parent, stage, sibling} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { os.RemoveAll(parent) })
		sum := sha256.Sum256(data)
		want := Expect{Name: "m", Checksum: hex.EncodeToString(sum[:]), VerifyChecksum: fuzzPinSums(data)}
		got, err := ExtractArchive(t.Context(), bytes.NewReader(data), stage, want, ExtractOptions{Limits: fuzzLimits, NoSync: true})

		if names := readDirNames(t, parent); !slices.Equal(names, []string{"sibling", "stage"}) {
			t.Fatalf("parent holds %q after ExtractArchive (err %v), want [sibling stage]", names, err)
		}
		if names := readDirNames(t, sibling); len(names) != 0 {
			t.Fatalf("sibling holds %q after ExtractArchive (err %v), want nothing", names, err)
		}
		if err != nil {
			kinds := []error{ErrUnsafeEntry, ErrArchiveTooLarge, ErrInvalidArchive, ErrChecksumMismatch, ErrSumsMismatch, ErrInvalidSums}
			if !slices.ContainsFunc(kinds, func(k error) bool { return errors.Is(err, k) }) {
				t.Fatalf("ExtractArchive() error %q wraps no sentinel", err)
			}
			if names := readDirNames(t, stage); len(names) != 0 {
				t.Fatalf("stage holds %q after error %v, want nothing", names, err)
			}
			return
		}
		fuzzCheckTree(t, stage)
		if err := VerifyTree(t.Context(), got.Dir, want.VerifyChecksum); err != nil {
			t.Errorf("VerifyTree(extracted) error = %v", err)
		}
		// The identities extraction took are those on disk: a verifier
		// that adopts them hashes nothing on a cheap check.
		var v TreeVerifier
		v.Adopt(got.Dir, got)
		if err := v.Verify(t.Context(), got.Dir, want.VerifyChecksum, false); err != nil || v.HashedBytes() != 0 {
			t.Errorf("cheap Verify of the adopted tree = %v after hashing %d bytes, want nil and 0", err, v.HashedBytes())
		}
		if _, err := os.Stat(filepath.Join(got.Dir, MachineFile)); err != nil {
			t.Errorf("accepted archive without machine.yaml: %v", err)
		}
	}
}

// fuzzCheckTree fails unless dir holds only regular files and directories
// with no mode bits beyond 0755.
func fuzzCheckTree(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := fi.Mode()
		if !m.IsRegular() && !m.IsDir() {
			t.Errorf("%s has mode %v, want a regular file or directory", p, m)
		}
		if m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || m.Perm()&^0o755 != 0 {
			t.Errorf("%s has mode %v, want at most 0755", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzParseSums(f *testing.F) {
	for _, tt := range sumsParseTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sums, err := ParseSums(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrInvalidSums) {
				t.Fatalf("ParseSums() error %q does not wrap ErrInvalidSums", err)
			}
			return
		}
		for p, digest := range sums {
			if reason := sumsCheckPath(p); reason != "" {
				t.Fatalf("ParseSums() accepted path %q: %s", p, reason)
			}
			if d, ok := sumsLowerHex([]byte(digest)); !ok || d != digest {
				t.Fatalf("ParseSums() stored digest %q for %q, want 64 lowercase hex digits", digest, p)
			}
		}
		var buf bytes.Buffer
		if _, err := sums.WriteTo(&buf); err != nil {
			t.Fatalf("WriteTo(ParseSums()) error = %v", err)
		}
		back, err := ParseSums(&buf)
		if err != nil {
			t.Fatalf("ParseSums(WriteTo()) error = %v", err)
		}
		if len(back) != len(sums) {
			t.Fatalf("round trip lost entries: %d, want %d", len(back), len(sums))
		}
		for p, d := range sums {
			if back[p] != d {
				t.Fatalf("round trip changed %q: %q, want %q", p, back[p], d)
			}
		}
	})
}
