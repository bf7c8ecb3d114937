package manager

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// hostileEntry is one tar entry of a hostile archive: a header and body,
// or raw bytes written as they are (for headers archive/tar refuses to
// write).
type hostileEntry struct {
	hdr  tar.Header
	body string
	raw  []byte
}

// ustarBlock returns a 512-byte ustar header block.
func ustarBlock(name string, typ byte, size int) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// padBlock pads data to a multiple of 512 bytes.
func padBlock(data []byte) []byte {
	return append(data, make([]byte, (512-len(data)%512)%512)...)
}

// sparseBomb is a PAX (GNU sparse 1.0) entry whose 513 stored bytes read
// as a 4 GiB file web/bomb: the hazard archive/tar reads but never writes.
func sparseBomb() []byte {
	var pax []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "web/bomb"}, {"GNU.sparse.realsize", "4294967296"}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		pax = append(pax, fmt.Sprintf("%d%s", n, rec)...)
	}
	body := append(padBlock([]byte("1\n0\n1\n")), 'x')
	out := append(ustarBlock("web/PaxHeaders/bomb", tar.TypeXHeader, len(pax)), padBlock(pax)...)
	out = append(out, ustarBlock("web/GNUSparseFile.0/bomb", tar.TypeReg, len(body))...)
	return append(out, padBlock(body)...)
}

func hostileFile(name, body string) hostileEntry {
	return hostileEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func hostileType(name string, typ byte, link string) hostileEntry {
	return hostileEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o644}}
}

// hostileSums is a SHA256SUMS listing files (name → content).
func hostileSums(t *testing.T, files map[string]string) string {
	t.Helper()
	sums := packer.Sums{}
	for name, content := range files {
		sum := sha256.Sum256([]byte(content))
		sums[name] = hex.EncodeToString(sum[:])
	}
	b, err := sums.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostileBase is a valid machine "web" (its SHA256SUMS lists machine.yaml)
// followed by extra entries.
func hostileBase(t *testing.T, extra ...hostileEntry) []hostileEntry {
	yaml := testMachineYAML("web", "9.0.0")
	return append([]hostileEntry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "web/", Mode: 0o755}},
		hostileFile("web/SHA256SUMS", hostileSums(t, map[string]string{"machine.yaml": yaml})),
		hostileFile("web/machine.yaml", yaml),
	}, extra...)
}

// hostileTgz writes entries as a tar.gz and returns it with the entry
// that pins exactly these bytes: the archive's author, not the network,
// is the attacker, so the checksums match.
func hostileTgz(t *testing.T, source string, entries []hostileEntry) ([]byte, spec.Machine) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	sums := ""
	for _, e := range entries {
		if e.raw != nil {
			// Write the raw blocks into the tar stream: flush what the
			// writer holds, then append (tw adds the end-of-archive
			// marker on Close).
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := gz.Write(e.raw); err != nil {
				t.Fatal(err)
			}
			continue
		}
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("write %s: %v", hdr.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "web/SHA256SUMS" {
			sums = e.body
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	sum, sumsSum := sha256.Sum256(data), sha256.Sum256([]byte(sums))
	return data, spec.Machine{Name: "web", Source: source, Checksum: hex.EncodeToString(sum[:]), VerifyChecksum: hex.EncodeToString(sumsSum[:])}
}

// hostileAbsName is the absolute entry name of the absolute-path case.
const hostileAbsName = "/mms-install-hostile-abs"

// TestInstallRejectsHostileArchives sends the archive hazards of the
// threat table (security.md §3) through the whole install path (HTTP,
// streaming verify and extract, stage, swap) on a node that already runs
// version 1, and checks the exact error, that the machines and state
// directories are byte-identical afterwards, and that no temporaries are
// left. packer's TestExtractArchiveThreats covers the same hazards at the
// extraction level.
func TestInstallRejectsHostileArchives(t *testing.T) {
	zeros := strings.Repeat("\x00", 2<<20)
	many := []hostileEntry{}
	for i := range 60 {
		many = append(many, hostileFile(fmt.Sprintf("web/f%02d", i), ""))
	}
	tests := []struct {
		name    string
		entries []hostileEntry
		wantErr string // after `install "web": extract archive "web": `
		kind    error
	}{
		{"traversal", hostileBase(t, hostileFile("../x", "evil")), `unsafe entry "../x": path is not local`, packer.ErrUnsafeEntry},
		{"traversal inside the top dir", hostileBase(t, hostileFile("web/../../x", "evil")), `unsafe entry "web/../../x": path is not local`, packer.ErrUnsafeEntry},
		{"absolute path", hostileBase(t, hostileFile(hostileAbsName, "evil")), `unsafe entry "` + hostileAbsName + `": absolute path not allowed`, packer.ErrUnsafeEntry},
		{"symlink", hostileBase(t, hostileType("web/link", tar.TypeSymlink, "/etc/passwd")), `unsafe entry "web/link": symlink not allowed`, packer.ErrUnsafeEntry},
		{"hard link", hostileBase(t, hostileType("web/hard", tar.TypeLink, "/etc/passwd")), `unsafe entry "web/hard": hard link not allowed`, packer.ErrUnsafeEntry},
		{"character device", hostileBase(t, hostileType("web/null", tar.TypeChar, "")), `unsafe entry "web/null": character device not allowed`, packer.ErrUnsafeEntry},
		{"FIFO", hostileBase(t, hostileType("web/fifo", tar.TypeFifo, "")), `unsafe entry "web/fifo": FIFO not allowed`, packer.ErrUnsafeEntry},
		{"duplicate entry", hostileBase(t, hostileFile("web/a", "1"), hostileFile("web/a", "2")), `unsafe entry "web/a": duplicate entry`, packer.ErrUnsafeEntry},
		{"case collision", hostileBase(t, hostileFile("web/A", "1"), hostileFile("web/a", "2")), `unsafe entry "web/a": case-insensitive collision with "web/A"`, packer.ErrUnsafeEntry},
		{"PAX sparse bomb", hostileBase(t, hostileEntry{raw: sparseBomb()}), `unsafe entry "web/bomb": sparse entries not allowed`, packer.ErrUnsafeEntry},
		{"gzip bomb over the per-file cap", hostileBase(t, hostileFile("web/zero", zeros)), `entry "web/zero" is 2097152 bytes, over the 1MiB per-file limit`, packer.ErrArchiveTooLarge},
		{"too many entries", hostileBase(t, many...), `too many entries: more than 50`, packer.ErrArchiveTooLarge},
		{"file not listed in SHA256SUMS", hostileBase(t, hostileFile("web/evil.sh", "rm -rf /")), `file not listed in SHA256SUMS: web/evil.sh`, packer.ErrSumsMismatch},
		{"empty SHA256SUMS", []hostileEntry{
			{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "web/", Mode: 0o755}},
			hostileFile("web/SHA256SUMS", ""), hostileFile("web/machine.yaml", testMachineYAML("web", "9.0.0")), hostileFile("web/run.sh", "x"),
		}, `SHA256SUMS lists 0 of 2 files`, packer.ErrSumsMismatch},
	}
	v1 := buildArchive(t, "web", "1.0.0", map[string]string{"run.sh": "echo one\n"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			mux.HandleFunc("/v1", serveArchive(v1))
			data, entry := hostileTgz(t, srv.URL+"/bad", tt.entries)
			mux.HandleFunc("/bad", func(w http.ResponseWriter, _ *http.Request) { w.Write(data) })

			env := newTestEnv(t, nil, FetchConfig{AllowHTTP: true})
			env.inst.limits = packer.Limits{MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxEntries: 50}
			if _, _, err := env.inst.Install(t.Context(), v1.entry(srv.URL+"/v1"), 1); err != nil {
				t.Fatalf("Install(v1) = %v", err)
			}
			machines, state := treetest.Snapshot(t, env.machines), treetest.Snapshot(t, env.state)

			out, _, err := env.inst.Install(t.Context(), entry, 2)
			want := `install "web": extract archive "web": ` + tt.wantErr
			if out != EntryFailed || err == nil || err.Error() != want {
				t.Fatalf("Install(%s) = %q, %v; want Failed, %q", tt.name, out, err, want)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Install(%s) error does not match %v", tt.name, tt.kind)
			}
			if diff := cmp.Diff(machines, treetest.Snapshot(t, env.machines)); diff != "" {
				t.Errorf("machines directory changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(state, treetest.Snapshot(t, env.state)); diff != "" {
				t.Errorf("state directory changed (-before +after):\n%s", diff)
			}
			assertNoLeftovers(t, env)
			if _, err := os.Lstat(hostileAbsName); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lstat(%s) = %v, want nothing written at the root", hostileAbsName, err)
			}
			if err := env.inst.Verify(t.Context(), "web", true); err != nil {
				t.Errorf("Verify(web) after the rejected install = %v, want version 1 intact", err)
			}
		})
	}
}
