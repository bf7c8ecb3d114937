package manager

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/benchtree"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

var benchArchiveOut = flag.String("manager.bench-archive", "",
	"copy the archive BenchmarkInstall generates to this path, to time the shell pipeline on it")

// benchArchive is one version of the shared benchmark machine, archived.
type benchArchive struct {
	data  []byte
	info  packer.ArchiveInfo
	total int64 // uncompressed bytes
}

// newBenchArchive archives the shared benchmark machine (internal/benchtree,
// ~100 MB in 2,000 files, as packer's BenchmarkExtract) with a valid
// machine.yaml of version.
func newBenchArchive(b *testing.B, version string) benchArchive {
	b.Helper()
	src := b.TempDir()
	total, err := benchtree.Write(src, []byte(testMachineYAML("bench", version)))
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := packer.CreateArchive(b.Context(), src, "bench", &buf)
	if err != nil {
		b.Fatal(err)
	}
	return benchArchive{data: buf.Bytes(), info: info, total: total}
}

// BenchmarkInstall measures Installer.Install of a ~100 MB, 2,000-file
// archive served over loopback: download, sha256 while streaming, gunzip,
// untar, SHA256SUMS check, flush, machine.yaml validation and the swap.
// Throughput is uncompressed bytes per second.
//
// "first" installs into empty directories; the trees are kept until the
// benchmark ends, since on some file systems (ext4 without a journal, as on
// this project's test machine) creating files shortly after deleting
// thousands costs more than the extraction itself, and deleting the last
// op's tree would measure that. "upgrade" replaces one version
// with the other on an installer that already keeps a previous version, so
// every op also retires the older previous tree; the op ends when Install
// returns (the new version could be loaded), and the old tree's deletion,
// which the installer does in the background, is waited for outside the
// timer. "upgrade-sustained" does not wait, as with back-to-back upgrades:
// each op runs while the previous op's old tree is being deleted.
//
// BenchmarkShellPipeline times the shell's way on the same archive.
func BenchmarkInstall(b *testing.B) {
	v1, v2 := newBenchArchive(b, "1.0.0"), newBenchArchive(b, "2.0.0")
	if *benchArchiveOut != "" {
		if err := os.WriteFile(*benchArchiveOut, v1.data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("archive: %d files, %d bytes uncompressed, %d bytes compressed", v1.info.Files, v1.total, v1.info.Size)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := v1.data
		if r.URL.Path == "/v2.tgz" {
			data = v2.data
		}
		http.ServeContent(w, r, "bench.tgz", time.Time{}, bytes.NewReader(data))
	})
	for _, proto := range []string{"http", "https"} {
		var srv *httptest.Server
		if proto == "https" {
			srv = httptest.NewTLSServer(handler)
		} else {
			srv = httptest.NewServer(handler)
		}
		defer srv.Close()
		f, err := NewFetcher(FetchConfig{AllowHTTP: true, Client: srv.Client()})
		if err != nil {
			b.Fatal(err)
		}
		entry := func(a benchArchive, path string) spec.Machine {
			return spec.Machine{Name: "bench", Source: srv.URL + path, Checksum: a.info.Checksum,
				VerifyChecksum: a.info.VerifyChecksum, Size: a.info.Size}
		}
		m1, m2 := entry(v1, "/v1.tgz"), entry(v2, "/v2.tgz")
		newInstaller := func(b *testing.B, dir string) *Installer {
			inst, err := NewInstaller(InstallerConfig{MachinesDir: filepath.Join(dir, "m"),
				StateDir: filepath.Join(dir, "s"), Fetcher: f})
			if err != nil {
				b.Fatal(err)
			}
			return inst
		}
		install := func(b *testing.B, inst *Installer, m spec.Machine, want EntryOutcome) {
			if out, _, err := inst.Install(b.Context(), m, 1); err != nil || out != want {
				b.Fatalf("Install = %q, %v; want %q", out, err, want)
			}
		}

		b.Run(proto+"/first", func(b *testing.B) {
			b.SetBytes(v1.total)
			root := b.TempDir()
			n := 0
			for b.Loop() {
				b.StopTimer()
				n++
				dir := filepath.Join(root, fmt.Sprint(n))
				inst := newInstaller(b, dir)
				b.StartTimer()
				install(b, inst, m1, EntryInstalled)
				b.StopTimer()
				waitCleanup(b, inst)
				b.StartTimer()
			}
		})
		if proto != "http" {
			continue
		}
		for _, sustained := range []bool{false, true} {
			name := proto + "/upgrade"
			if sustained {
				name += "-sustained"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(v1.total)
				inst := newInstaller(b, b.TempDir())
				// Two versions in: the live one and the previous one.
				install(b, inst, m1, EntryInstalled)
				install(b, inst, m2, EntryUpdated)
				waitCleanup(b, inst)
				ms := []spec.Machine{m1, m2}
				i := 0
				for b.Loop() {
					install(b, inst, ms[i%2], EntryUpdated)
					i++
					if !sustained {
						b.StopTimer()
						waitCleanup(b, inst)
						b.StartTimer()
					}
				}
				b.StopTimer()
				waitCleanup(b, inst)
			})
		}
	}
}

// BenchmarkShellPipeline is the yardstick for BenchmarkInstall: the shell
// pipeline that installs the same archive from a local file (no download)
// and verifies it, run by sh: sha256sum -c of the archive, tar xzf into a
// fresh directory, sha256sum -c of SHA256SUMS, one sync. As for
// BenchmarkInstall/first, the trees are kept until the benchmark ends.
func BenchmarkShellPipeline(b *testing.B) {
	for _, tool := range []string{"sh", "sha256sum", "tar", "sync"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not found: %v", tool, err)
		}
	}
	a := newBenchArchive(b, "1.0.0")
	archive := filepath.Join(b.TempDir(), "bench.tgz")
	if err := os.WriteFile(archive, a.data, 0o644); err != nil {
		b.Fatal(err)
	}
	const script = `echo "$SUM  $ARCHIVE" | sha256sum -c --quiet - && tar xzf "$ARCHIVE" -C "$DEST" &&
cd "$DEST/bench" && sha256sum -c --quiet SHA256SUMS && sync`
	b.SetBytes(a.total)
	root := b.TempDir()
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		dest := filepath.Join(root, fmt.Sprint(n))
		if err := os.Mkdir(dest, 0o755); err != nil {
			b.Fatal(err)
		}
		cmd := exec.CommandContext(b.Context(), "sh", "-c", script)
		cmd.Env = append(os.Environ(), "SUM="+a.info.Checksum, "ARCHIVE="+archive, "DEST="+dest)
		b.StartTimer()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pipeline: %v\n%s", err, out)
		}
	}
}
