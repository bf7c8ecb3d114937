package packer

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

// mixedMachineFiles is a machine whose files exercise every path of the
// extraction: empty, small (the writer pool), exactly the pool's largest,
// and larger (written as they are read), spread over directories that
// alternate in the tar stream, with both modes.
func mixedMachineFiles() (files map[string]string, exec map[string]bool) {
	rng := rand.New(rand.NewPCG(3, 4))
	content := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return string(b)
	}
	files = map[string]string{"machine.yaml": "name: m\nversion: 1.0.0\n", "empty": ""}
	exec = map[string]bool{}
	sizes := []int{1, 100, 64 << 10, archivePoolFileMax, archivePoolFileMax + 1, 2 << 20}
	for i, n := range sizes {
		for _, d := range []string{"a", "b/c", "b"} {
			p := fmt.Sprintf("%s/f%d", d, i)
			files[p] = content(n)
			exec[p] = i%2 == 1
		}
	}
	return files, exec
}

// mixedMachineTar is machineTar of files with the exec bits set, and the
// files of the directories interleaved instead of grouped.
func mixedMachineTar(files map[string]string, exec map[string]bool) []tarEntry {
	entries := []tarEntry{dirEntry("m/"), dirEntry("m/a/"), dirEntry("m/b/"), dirEntry("m/b/c/"), regEntry("m/SHA256SUMS", sumsText(files))}
	names := slices.Sorted(mapsKeys(files))
	// f0 of a, b/c and b, then f1 of each, ...: the directory changes at
	// every entry.
	slices.SortStableFunc(names, func(x, y string) int { return strings.Compare(filepath.Base(x), filepath.Base(y)) })
	for _, p := range names {
		mode := int64(0o644)
		if exec[p] {
			mode = 0o751
		}
		entries = append(entries, modeEntry("m/"+p, files[p], mode))
	}
	return entries
}

// creators are the ways to create files an extraction can use here.
func creators() map[string]func(*os.Root) archiveCreator {
	return map[string]func(*os.Root) archiveCreator{
		"default":       newArchiveCreator,
		"per-directory": func(root *os.Root) archiveCreator { return &archiveDirCreator{root: root} },
	}
}

func TestExtractArchiveCreators(t *testing.T) {
	files, exec := mixedMachineFiles()
	entries := mixedMachineTar(files, exec)
	data := tgz(t, entries...)
	for name, newCreator := range creators() {
		t.Run(name, func(t *testing.T) {
			sb := newSandbox(t)
			got, err := extractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, entries), ExtractOptions{}, newCreator)
			if err != nil {
				t.Fatalf("extractArchive() error = %v", err)
			}
			sb.check(t, false)
			if got.Files != len(files) {
				t.Errorf("Files = %d, want %d", got.Files, len(files))
			}
			for p, body := range files {
				b, err := os.ReadFile(filepath.Join(got.Dir, p))
				if err != nil || !bytes.Equal(b, []byte(body)) {
					t.Errorf("content of %s: %d bytes, %v; want the archive's %d bytes", p, len(b), err, len(body))
				}
				want := os.FileMode(0o644)
				if exec[p] {
					want = 0o755
				}
				if fi, err := os.Stat(filepath.Join(got.Dir, p)); err != nil || fi.Mode() != want {
					t.Errorf("mode of %s = %v, %v; want %v", p, fi.Mode(), err, want)
				}
			}
			if err := VerifyTree(t.Context(), got.Dir, expectFor(data, entries).VerifyChecksum); err != nil {
				t.Errorf("VerifyTree(extracted) = %v", err)
			}
		})
	}
}

// failingCreator fails its nth create and every one after it.
type failingCreator struct {
	archiveCreator
	n     int64
	calls atomic.Int64
}

var errCreateFailed = errors.New("no space left on device (test)")

func (c *failingCreator) create(p string, perm os.FileMode) (*os.File, error) {
	if c.calls.Add(1) >= c.n {
		return nil, errCreateFailed
	}
	return c.archiveCreator.create(p, perm)
}

// TestExtractArchiveWriterFails makes the writer pool (or the extracting
// goroutine, for a large file) fail to create a file part-way: the
// extraction reports that error, empties the stage and leaves no goroutine
// behind.
func TestExtractArchiveWriterFails(t *testing.T) {
	files, exec := mixedMachineFiles()
	entries := mixedMachineTar(files, exec)
	data := tgz(t, entries...)
	for name, newCreator := range creators() {
		for _, n := range []int64{1, 2, 5, int64(len(files))} {
			t.Run(fmt.Sprintf("%s/create %d", name, n), func(t *testing.T) {
				defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
				sb := newSandbox(t)
				fail := func(root *os.Root) archiveCreator { return &failingCreator{archiveCreator: newCreator(root), n: n} }
				_, err := extractArchive(t.Context(), bytes.NewReader(data), sb.stage, expectFor(data, entries), ExtractOptions{NoSync: true}, fail)
				if !errors.Is(err, errCreateFailed) {
					t.Fatalf("extractArchive() with create %d failing = %v, want %v", n, err, errCreateFailed)
				}
				sb.check(t, true)
			})
		}
	}
}

// TestArchiveCreatorsStayInStage swaps a directory of the stage for a
// symlink to a directory outside it, as a racing local attacker could:
// no creator follows it.
func TestArchiveCreatorsStayInStage(t *testing.T) {
	for name, newCreator := range creators() {
		t.Run(name, func(t *testing.T) {
			sb := newSandbox(t)
			outside := filepath.Join(sb.parent, "sibling")
			if err := os.MkdirAll(filepath.Join(sb.stage, "m"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(sb.stage, "m", "d")); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(sb.stage)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			c := newCreator(root)
			defer c.close()
			if f, err := c.create("m/d/evil", 0o644); err == nil {
				f.Close()
				t.Errorf("create(m/d/evil) through a symlink out of the stage succeeded")
			}
			if f, err := c.create("m/d", 0o644); err == nil {
				f.Close()
				t.Errorf("create(m/d) over the symlink succeeded")
			}
			if names := readDirNames(t, outside); len(names) != 0 {
				t.Errorf("outside directory holds %q, want nothing", names)
			}
		})
	}
}
