package packer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// tarEntry is one entry of a hand-made test archive. When raw is set it is
// written as is (already a sequence of 512-byte blocks) instead of hdr.
type tarEntry struct {
	hdr  tar.Header
	body string
	raw  []byte
}

func regEntry(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func modeEntry(name, body string, mode int64) tarEntry {
	e := regEntry(name, body)
	e.hdr.Mode = mode
	return e
}

func dirEntry(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func typeEntry(name string, flag byte, link string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: flag, Name: name, Linkname: link, Mode: 0o644, Devmajor: 1, Devminor: 3}}
}

// tarBytes returns the uncompressed tar stream of entries, written as given.
func tarBytes(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if e.raw != nil {
			if err := tw.Flush(); err != nil {
				t.Fatalf("tar flush: %v", err)
			}
			buf.Write(e.raw)
			continue
		}
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("tar header %q: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("tar body %q: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	return buf.Bytes()
}

// gzipBytes compresses data.
func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return buf.Bytes()
}

// tgz returns a tar.gz of entries, written as given.
func tgz(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	return gzipBytes(t, tarBytes(t, entries))
}

// sumsText renders files (path → content) as a SHA256SUMS file.
func sumsText(files map[string]string) string {
	var b strings.Builder
	for _, p := range slices.Sorted(mapsKeys(files)) {
		fmt.Fprintf(&b, "%s  %s\n", hexSum(files[p]), p)
	}
	return b.String()
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// testMachineFiles is the content of a small valid machine.
var testMachineFiles = map[string]string{
	"machine.yaml": "name: m\nversion: 1.0.0\n",
	"bin/run":      "#!/bin/sh\necho hi\n",
	"README":       "hello",
}

// machineTar returns the entries of a valid archive of machine m with the
// given files: m/, m/SHA256SUMS listing them, then the files sorted by
// path, each preceded by its parent directory entries.
func machineTar(files map[string]string) []tarEntry {
	entries := []tarEntry{dirEntry("m/"), regEntry("m/SHA256SUMS", sumsText(files))}
	made := map[string]bool{}
	for _, p := range slices.Sorted(mapsKeys(files)) {
		for i := range len(p) {
			if p[i] == '/' && !made[p[:i]] {
				made[p[:i]] = true
				entries = append(entries, dirEntry("m/"+p[:i]+"/"))
			}
		}
		mode := int64(0o644)
		if strings.HasPrefix(p, "bin/") {
			mode = 0o755
		}
		entries = append(entries, modeEntry("m/"+p, files[p], mode))
	}
	return entries
}

// expectFor pins data: its sha256 and the sha256 of the m/SHA256SUMS body
// among entries (or of nothing when there is none).
func expectFor(data []byte, entries []tarEntry) Expect {
	sum := sha256.Sum256(data)
	want := Expect{Name: "m", Checksum: hex.EncodeToString(sum[:]), VerifyChecksum: hexSum("")}
	for _, e := range entries {
		if archiveNormalizeName(e.hdr.Name) == "m/SHA256SUMS" {
			want.VerifyChecksum = hexSum(e.body)
		}
	}
	return want
}

// rawPAXEntry returns the raw blocks of a regular-file entry preceded by a
// PAX extended header with the given records, which archive/tar's writer
// would refuse or drop (GNU.sparse.*).
func rawPAXEntry(records [][2]string, name string, body []byte) []byte {
	var recs strings.Builder
	for _, kv := range records {
		line := " " + kv[0] + "=" + kv[1] + "\n"
		size := len(line) + 1
		for len(line)+len(strconv.Itoa(size)) != size {
			size = len(line) + len(strconv.Itoa(size))
		}
		recs.WriteString(strconv.Itoa(size) + line)
	}
	var out []byte
	out = append(out, rawHeader("PaxHeaders/"+name, tar.TypeXHeader, int64(recs.Len()))...)
	out = append(out, pad512([]byte(recs.String()))...)
	out = append(out, rawHeader(name, tar.TypeReg, int64(len(body)))...)
	return append(out, pad512(body)...)
}

// rawHeader returns one ustar header block.
func rawHeader(name string, flag byte, size int64) []byte {
	return rawHeaderMagic(name, flag, size, "ustar\x0000")
}

// rawHeaderMagic returns one header block with the given magic and version
// ("ustar\x0000" for ustar and PAX, "ustar  \x00" for GNU).
func rawHeaderMagic(name string, flag byte, size int64, magic string) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = flag
	copy(b[257:], magic)
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad512(b []byte) []byte {
	out := slices.Clone(b)
	if r := len(out) % 512; r != 0 {
		out = append(out, make([]byte, 512-r)...)
	}
	return out
}

// sandbox is a parent directory holding a stage to extract into, a canary
// file and an empty canary directory that extraction must never touch.
type sandbox struct {
	parent, stage string
}

const sandboxCanary = "canary file content"

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	sb := &sandbox{parent: t.TempDir()}
	sb.stage = filepath.Join(sb.parent, "stage")
	for _, d := range []string{sb.stage, filepath.Join(sb.parent, "sibling")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sb.parent, "canary.txt"), []byte(sandboxCanary), 0o644); err != nil {
		t.Fatal(err)
	}
	return sb
}

// check fails the test if anything outside the stage changed, and, when
// stageEmpty is set, if the stage is not empty.
func (sb *sandbox) check(t testing.TB, stageEmpty bool) {
	t.Helper()
	names := readDirNames(t, sb.parent)
	if want := []string{"canary.txt", "sibling", "stage"}; !slices.Equal(names, want) {
		t.Errorf("parent dir holds %q, want %q", names, want)
	}
	if got, err := os.ReadFile(filepath.Join(sb.parent, "canary.txt")); err != nil || string(got) != sandboxCanary {
		t.Errorf("canary = %q, %v, want %q", got, err, sandboxCanary)
	}
	if names := readDirNames(t, filepath.Join(sb.parent, "sibling")); len(names) != 0 {
		t.Errorf("sibling dir holds %q, want nothing", names)
	}
	if stageEmpty {
		if names := readDirNames(t, sb.stage); len(names) != 0 {
			t.Errorf("stage holds %q after a failed extraction, want nothing", names)
		}
	}
}

func readDirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
