// Package benchtree writes the synthetic machine tree that the archive and
// install benchmarks share, so their numbers describe the same input: about
// 100 MB in 2,000 files under 40 directories, half text (lines of words
// from a small vocabulary, like scripts and configs) and half binary-like
// (random runs mixed with repetitive structure, like executables), each
// 1-100 KiB. The content is fixed by a seeded generator.
package benchtree

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Shape of the tree.
const (
	Files = 2000
	Dirs  = 40
)

// Write writes the tree under dir with machineYAML as its machine.yaml and
// returns the total number of bytes written.
func Write(dir string, machineYAML []byte) (int64, error) {
	return WriteFiles(dir, machineYAML, Files)
}

// WriteFiles writes the first files files of the tree (about 50 KiB each,
// spread over Dirs directories) under dir with machineYAML, for a smaller
// archive of the same make-up (`mms bench --quick`). WriteFiles(dir, y,
// Files) is Write.
func WriteFiles(dir string, machineYAML []byte, files int) (int64, error) {
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
	write := func(rel string, data []byte) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write bench tree: %w", err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("write bench tree: %w", err)
		}
		total += int64(len(data))
		return nil
	}
	if err := write("machine.yaml", machineYAML); err != nil {
		return 0, err
	}
	for i := range files {
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
		if err := write(fmt.Sprintf("d%02d/f%04d", i%Dirs, i), buf.Bytes()[:size]); err != nil {
			return 0, err
		}
	}
	return total, nil
}
