package manager

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/benchtree"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

var benchArchiveOut = flag.String("manager.bench-archive", "",
	"copy the archive BenchmarkInstall generates to this path, to time the shell pipeline on it")

// writeInstallBenchTree writes the shared benchmark machine
// (internal/benchtree, ~100 MB in 2,000 files, as packer's BenchmarkExtract)
// with a valid machine.yaml, and returns its total size.
func writeInstallBenchTree(b *testing.B, dir string) int64 {
	b.Helper()
	total, err := benchtree.Write(dir, []byte(testMachineYAML("bench", "1.0.0")))
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkInstall measures Installer.Install of a fresh ~100 MB,
// 2,000-file archive served over loopback: download, sha256 while
// streaming, gunzip, untar, SHA256SUMS check, flush, machine.yaml
// validation and the swap. Throughput is uncompressed bytes per second.
func BenchmarkInstall(b *testing.B) {
	src := b.TempDir()
	total := writeInstallBenchTree(b, src)
	var buf bytes.Buffer
	info, err := packer.CreateArchive(b.Context(), src, "bench", &buf)
	if err != nil {
		b.Fatal(err)
	}
	if *benchArchiveOut != "" {
		if err := os.WriteFile(*benchArchiveOut, buf.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("archive: %d files, %d bytes uncompressed, %d bytes compressed", info.Files, total, info.Size)
	data := buf.Bytes()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "bench.tgz", time.Time{}, bytes.NewReader(data))
	})
	for _, bc := range []struct {
		name string
		tls  bool
	}{{"http", false}, {"https", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var srv *httptest.Server
			if bc.tls {
				srv = httptest.NewTLSServer(handler)
			} else {
				srv = httptest.NewServer(handler)
			}
			defer srv.Close()
			f, err := NewFetcher(FetchConfig{AllowHTTP: true, Client: srv.Client()})
			if err != nil {
				b.Fatal(err)
			}
			m := spec.Machine{Name: "bench", Source: srv.URL + "/bench.tgz", Checksum: info.Checksum,
				VerifyChecksum: info.VerifyChecksum, Size: info.Size}
			b.SetBytes(total)
			root := b.TempDir()
			n := 0
			for b.Loop() {
				b.StopTimer()
				n++
				inst, err := NewInstaller(InstallerConfig{MachinesDir: filepath.Join(root, fmt.Sprint(n), "m"),
					StateDir: filepath.Join(root, fmt.Sprint(n), "s"), Fetcher: f})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if out, _, err := inst.Install(b.Context(), m, 1); err != nil || out != EntryInstalled {
					b.Fatalf("Install = %q, %v", out, err)
				}
				b.StopTimer()
				if err := os.RemoveAll(filepath.Join(root, fmt.Sprint(n))); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
