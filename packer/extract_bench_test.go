package packer

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

var benchArchiveOut = flag.String("packer.bench-archive", "",
	"copy the archive BenchmarkExtract generates to this path, to time other tools on it")

const (
	benchFiles = 2000
	benchDirs  = 40
)

// writeBenchTree writes a machine of about 100 MB in 2,000 files under dir
// and returns the total size: half text (lines of words from a small
// vocabulary, like scripts and configs) and half binary-like (random runs
// mixed with repetitive structure, like executables), sizes 1-100 KiB.
func writeBenchTree(b *testing.B, dir string) int64 {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 600)
	for i := range vocab {
		w := make([]byte, 2+rng.IntN(9))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		vocab[i] = string(w)
	}
	var total int64
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	write(MachineFile, []byte("name: bench\nversion: 1.0.0\n"))
	for i := range benchFiles {
		size := 1024 + rng.IntN(100*1024)
		var buf bytes.Buffer
		if i%2 == 0 {
			for buf.Len() < size {
				for range 1 + rng.IntN(12) {
					buf.WriteString(vocab[rng.IntN(len(vocab))])
					buf.WriteByte(' ')
				}
				buf.WriteByte('\n')
			}
		} else {
			for buf.Len() < size {
				run := make([]byte, 16+rng.IntN(240))
				if rng.IntN(2) == 0 {
					for j := range run {
						run[j] = byte(rng.Uint32())
					}
				} else {
					for j := range run {
						run[j] = byte(j % (1 + rng.IntN(8)))
					}
				}
				buf.Write(run)
			}
		}
		write(fmt.Sprintf("d%02d/f%04d", i%benchDirs, i), buf.Bytes()[:size])
	}
	return total
}

// BenchmarkExtract measures install throughput (uncompressed bytes per
// second) for a ~100 MB, 2,000-file archive read from a file: one pass of
// hashing, gunzip, untar and SHA256SUMS verification, with and without the
// final flush to stable storage.
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
		name string
		opts ExtractOptions
	}{{"sync", ExtractOptions{}}, {"nosync", ExtractOptions{NoSync: true}}} {
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
				if err := os.RemoveAll(stage); err != nil {
					b.Fatal(err)
				}
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
