package packer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// VerifyTree re-checks an installed machine directory dir against its
// SHA256SUMS: the file's own sha256 must equal verifyChecksum
// ([ErrChecksumMismatch]); the regular files in dir other than SHA256SUMS
// must be exactly those it lists, each with a matching digest
// ([ErrSumsMismatch]); and dir may hold nothing but regular files and
// directories, none setuid, setgid, sticky or group/world-writable
// ([ErrUnsafeEntry]). Every problem is reported. Nothing is excluded: the
// agent keeps a machine's runtime data outside its directory.
//
// VerifyTree hashes every file; [TreeVerifier] can skip unchanged ones.
func VerifyTree(ctx context.Context, dir, verifyChecksum string) error {
	var v TreeVerifier
	return v.Verify(ctx, dir, verifyChecksum, true)
}

// TreeVerifier verifies installed machine directories like [VerifyTree],
// remembering for each file that verified its size, modification and
// change times, inode and device, so that a cheap check can skip hashing
// files whose metadata did not change. The zero value is ready to use, and
// a TreeVerifier is safe for concurrent use.
type TreeVerifier struct {
	mu     sync.Mutex
	trees  map[string]*treeVerifierCache // by cleaned directory path
	hashed atomic.Int64                  // bytes of file content hashed
}

// treeVerifierCache is what a TreeVerifier remembers about one directory.
type treeVerifierCache struct {
	verifyChecksum string
	files          map[string]treeFileStamp
}

// treeFileStamp identifies one version of a file that verified.
type treeFileStamp struct {
	fileID
	digest string
}

// Verify checks dir like [VerifyTree]. When full is false, a listed file
// whose metadata is unchanged since it last verified (for the same
// verifyChecksum) is not hashed again; the directory walk, the set check
// and SHA256SUMS itself are always checked in full. Files that verify are
// remembered for the next cheap check; a failed file is forgotten.
func (v *TreeVerifier) Verify(ctx context.Context, dir, verifyChecksum string, full bool) error {
	key := filepath.Clean(dir)
	want, ok := sumsLowerHex([]byte(verifyChecksum))
	if !ok {
		return fmt.Errorf("verify %s: expected SHA256SUMS checksum %q is not 64 hex digits", dir, verifyChecksum)
	}
	var known map[string]treeFileStamp
	if !full {
		v.mu.Lock()
		if c := v.trees[key]; c != nil && c.verifyChecksum == want {
			known = c.files
		}
		v.mu.Unlock()
	}
	verified, err := verifyTree(ctx, dir, want, known, &v.hashed)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.trees == nil {
		v.trees = make(map[string]*treeVerifierCache)
	}
	v.trees[key] = &treeVerifierCache{verifyChecksum: want, files: verified}
	if err != nil {
		return fmt.Errorf("verify %s: %w", dir, err)
	}
	return nil
}

// Adopt makes v remember the files of x, extracted by [ExtractArchive], as
// the verified content of dir, as if a Verify of dir against x's
// SHA256SUMS had just hashed them: call it once the tree x.Dir has been
// renamed to dir whole (a rename keeps each file's identity). ExtractArchive
// hashed every file as it wrote it and took its identity right after, so
// the next cheap Verify of dir hashes only files changed since then, and
// an upgrade does not hash the tree it just installed again. A file
// rewritten, replaced or re-moded after extraction has another identity
// and is hashed. Adopt does not touch the disk.
func (v *TreeVerifier) Adopt(dir string, x *Extracted) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := filepath.Clean(dir)
	if x == nil || x.stamps == nil {
		delete(v.trees, key)
		return
	}
	if v.trees == nil {
		v.trees = make(map[string]*treeVerifierCache)
	}
	v.trees[key] = &treeVerifierCache{verifyChecksum: x.verifyChecksum, files: x.stamps}
}

// HashedBytes returns how many bytes of file content v has hashed so far.
func (v *TreeVerifier) HashedBytes() int64 { return v.hashed.Load() }

// Forget drops what v remembers about dir, for example after it is removed.
func (v *TreeVerifier) Forget(dir string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.trees, filepath.Clean(dir))
}

// verifyTree checks dir against its SHA256SUMS, skipping files whose stamp
// is in known with the listed digest and which the walk found unchanged
// since (without opening them). It returns the stamps of every file
// that verified, also when it reports problems with others, and adds the
// bytes it hashes to hashed. It only reads known.
func verifyTree(ctx context.Context, dir, want string, known map[string]treeFileStamp, hashed *atomic.Int64) (map[string]treeFileStamp, error) {
	verified := make(map[string]treeFileStamp)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return verified, err
	}
	defer root.Close()
	sums, err := verifyTreeSums(root, want)
	if err != nil {
		return verified, err
	}
	files, ids, problems, err := verifyTreeWalk(ctx, root)
	if err != nil {
		return verified, err
	}
	problems = append(problems, sumsSetProblems(sums, files, "")...)
	var buf copyBuf
	h := sha256.New()
	for _, rel := range files {
		wantDigest, listed := sums[rel]
		if !listed {
			continue
		}
		if err := ctx.Err(); err != nil {
			return verified, err
		}
		walked, ok := ids[rel]
		if k, seen := known[rel]; ok && seen && k.fileID == walked && k.digest == wantDigest {
			// Unchanged since it verified, as the walk's lstat shows: no
			// need to open it.
			verified[rel] = k
			continue
		}
		stamp, err := verifyTreeFile(root, rel, wantDigest, h, &buf, hashed)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		verified[rel] = stamp
	}
	return verified, archiveJoin(ErrSumsMismatch, problems)
}

// verifyTreeSums reads SHA256SUMS, checks its sha256 and parses it.
func verifyTreeSums(root *os.Root, want string) (Sums, error) {
	f, err := root.Open(SumsFile)
	if err != nil {
		return nil, archiveErrorf(ErrSumsMismatch, "open %s: %w", SumsFile, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, archiveErrorf(ErrSumsMismatch, "%s is not a regular file", SumsFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSumsSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", SumsFile, err)
	}
	got := sha256.Sum256(data)
	if gotHex := hex.EncodeToString(got[:]); gotHex != want {
		return nil, archiveErrorf(ErrChecksumMismatch, "%s sha256 mismatch: got %s, want %s", SumsFile, gotHex, want)
	}
	return ParseSums(bytes.NewReader(data))
}

// verifyTreeWalk lists the regular files of the tree (SHA256SUMS excluded)
// in sorted order, with the fileID of each as the walk found it, and
// reports entries that may not be there.
func verifyTreeWalk(ctx context.Context, root *os.Root) ([]string, map[string]fileID, []error, error) {
	var files []string
	ids := make(map[string]fileID)
	var problems []error
	err := fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case d.Type().IsRegular() || d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			if m := info.Mode(); m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || m.Perm()&0o022 != 0 {
				problems = append(problems, unsafeEntry(rel, "mode %v not allowed", m))
			}
			if d.Type().IsRegular() && rel != SumsFile {
				files = append(files, rel)
				if id, err := fileIDOf(info); err == nil {
					ids[rel] = id
				}
			}
		case d.Type()&fs.ModeSymlink != 0:
			problems = append(problems, unsafeEntry(rel, "symlink not allowed"))
		default:
			problems = append(problems, unsafeEntry(rel, "file type %v not allowed", d.Type()))
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("walk tree: %w", err)
	}
	slices.Sort(files)
	return files, ids, problems, nil
}

// verifyTreeFile checks one listed file by hashing it (verifyTree skips a
// file whose stamp it knows and the walk found unchanged).
func verifyTreeFile(root *os.Root, rel, want string, h interface {
	io.Writer
	Reset()
	Sum([]byte) []byte
}, buf *copyBuf, hashed *atomic.Int64) (treeFileStamp, error) {
	f, err := root.Open(rel)
	if err != nil {
		return treeFileStamp{}, entryErrorf(ErrSumsMismatch, rel, "open %s: %v", rel, err)
	}
	defer f.Close()
	before, err := statFileID(f)
	if err != nil {
		return treeFileStamp{}, entryErrorf(ErrSumsMismatch, rel, "stat %s: %v", rel, err)
	}
	h.Reset()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf.get(before.size))
	hashed.Add(n)
	if err != nil {
		return treeFileStamp{}, entryErrorf(ErrSumsMismatch, rel, "read %s: %v", rel, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return treeFileStamp{}, sumsDigestMismatch("", rel, got, want)
	}
	after, err := statFileID(f)
	if err != nil || after != before {
		return treeFileStamp{}, entryErrorf(ErrSumsMismatch, rel, "%s changed while it was verified", rel)
	}
	return treeFileStamp{fileID: before, digest: want}, nil
}
