package packer

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mms-io/mms/internal/benchtree"
)

var benchArchiveOut = flag.String("packer.bench-archive", "",
	"copy the archive BenchmarkExtract generates to this path, to time other tools on it")

// writeBenchTree writes the shared benchmark machine (internal/benchtree)
// under dir and returns its total size.
func writeBenchTree(b *testing.B, dir string) int64 {
	b.Helper()
	total, err := benchtree.Write(dir, []byte("name: bench\nversion: 1.0.0\n"))
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkExtract measures install throughput (uncompressed bytes per
// second) for a ~100 MB, 2,000-file archive read from a file: one pass of
// hashing, gunzip, untar and SHA256SUMS verification, with and without the
// final flush to stable storage. The extracted trees are kept until the
// benchmark ends: on some file systems (ext4 without a journal, as on this
// project's test machine) creating files shortly after deleting thousands
// costs more than the extraction itself. "nosync-after-delete" measures
// just that: each op follows the deletion of the previous op's tree, as an
// upgrade follows the deletion of a retired version.
func BenchmarkExtract(b *testing.B) {
	src := b.TempDir()
	total := writeBenchTree(b, src)
	archive := filepath.Join(b.TempDir(), "bench.tgz")
	f, err := os.Create(archive)
	if err != nil {
		b.Fatal(err)
	}
	info, err := CreateArchive(b.Context(), src, "bench", f)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if *benchArchiveOut != "" {
		if err := copyBenchArchive(archive, *benchArchiveOut); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("archive: %d files, %d bytes uncompressed, %d bytes compressed", info.Files, total, info.Size)
	want := Expect{Name: "bench", Checksum: info.Checksum, VerifyChecksum: info.VerifyChecksum}

	for _, bc := range []struct {
		name  string
		opts  ExtractOptions
		churn bool // delete the previous op's tree just before
	}{
		{"sync", ExtractOptions{}, false},
		{"nosync", ExtractOptions{NoSync: true}, false},
		{"nosync-after-delete", ExtractOptions{NoSync: true}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(total)
			stages := b.TempDir()
			i := 0
			for b.Loop() {
				b.StopTimer()
				stage := filepath.Join(stages, fmt.Sprint(i))
				i++
				if err := os.Mkdir(stage, 0o755); err != nil {
					b.Fatal(err)
				}
				if prev := filepath.Join(stages, fmt.Sprint(i-2)); bc.churn && i >= 2 {
					if err := os.RemoveAll(prev); err != nil {
						b.Fatal(err)
					}
				}
				r, err := os.Open(archive)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := ExtractArchive(b.Context(), r, stage, want, bc.opts); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				r.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkCreateArchive measures how fast `mms pack` can archive the same
// ~100 MB tree.
func BenchmarkCreateArchive(b *testing.B) {
	src := b.TempDir()
	b.SetBytes(writeBenchTree(b, src))
	for b.Loop() {
		if _, err := CreateArchive(b.Context(), src, "bench", io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func copyBenchArchive(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// BenchmarkExtractSmall measures the install of a machine the size most
// are: a machine.yaml and a script, about a kilobyte. Its cost is the
// fixed cost of an extraction (buffers, goroutines, the files' creation),
// which a fleet pays on every node for every version.
func BenchmarkExtractSmall(b *testing.B) {
	src := b.TempDir()
	files := map[string]string{
		"machine.yaml": "name: small\nversion: 1.0.0\ninitial_state: run\ntransitions: []\nwatchers: []\n",
		"check.sh":     "#!/bin/sh\necho ok\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var archive bytes.Buffer
	info, err := CreateArchive(b.Context(), src, "small", &archive)
	if err != nil {
		b.Fatal(err)
	}
	want := Expect{Name: "small", Checksum: info.Checksum, VerifyChecksum: info.VerifyChecksum}
	stages := b.TempDir()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		stage := filepath.Join(stages, fmt.Sprint(i))
		i++
		if err := os.Mkdir(stage, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := ExtractArchive(b.Context(), bytes.NewReader(archive.Bytes()), stage, want, ExtractOptions{NoSync: true, SizeHint: info.Size}); err != nil {
			b.Fatal(err)
		}
	}
}
