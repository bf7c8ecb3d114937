package packer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// file extracts the regular file entry hdr to n, hashing it on the way:
// a small file goes to the writer pool, a large one is written here as it
// is read.
func (x *archiveExtraction) file(ctx context.Context, tr *tar.Reader, hdr *tar.Header, n string) error {
	if hdr.Size > x.limits.MaxFileSize {
		return entryErrorf(ErrArchiveTooLarge, hdr.Name, "entry %q is %d bytes, over the %s per-file limit",
			hdr.Name, hdr.Size, archiveFormatSize(x.limits.MaxFileSize))
	}
	if hdr.Size > x.limits.MaxTotalSize-x.total {
		return entryErrorf(ErrArchiveTooLarge, hdr.Name, "uncompressed size exceeds %s at entry %q",
			archiveFormatSize(x.limits.MaxTotalSize), hdr.Name)
	}
	x.total += hdr.Size
	rel := strings.TrimPrefix(n, x.want.Name+"/")
	isSums := rel == SumsFile
	if isSums && hdr.Size > MaxSumsSize {
		return entryErrorf(ErrArchiveTooLarge, hdr.Name, "entry %q is larger than %s", hdr.Name, archiveFormatSize(MaxSumsSize))
	}
	if err := x.mkdirAll(path.Dir(n)); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		perm = 0o755
	}
	if hdr.Size <= archivePoolFileMax {
		return x.submit(ctx, tr, hdr, n, rel, perm, isSums)
	}
	f, err := x.creator.create(n, perm)
	if err != nil {
		return err
	}
	digest, err := x.fill(ctx, f, tr, hdr, perm, isSums)
	var id fileID
	if err == nil {
		if id, err = statFileID(f); err != nil {
			err = fmt.Errorf("stat %q: %w", n, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %q: %w", n, cerr)
	}
	if err != nil {
		return err
	}
	x.setDigest(rel, digest, id)
	return nil
}

// submit reads the small file entry hdr into a buffer of the pool and
// hands it to a writer.
func (x *archiveExtraction) submit(ctx context.Context, tr *tar.Reader, hdr *tar.Header, n, rel string, perm os.FileMode, isSums bool) error {
	buf, err := x.pool.buffer(ctx, int(hdr.Size))
	if err != nil {
		return err
	}
	if err := archiveReadEntry(tr, hdr, buf); err != nil {
		x.pool.release(buf)
		return err
	}
	if isSums {
		x.sums = append(x.sums[:0], buf...)
	}
	var f *os.File
	if !x.creator.concurrent() {
		if f, err = x.creator.create(n, perm); err != nil {
			x.pool.release(buf)
			return err
		}
	}
	x.pool.submit(archiveJob{entry: hdr.Name, path: n, rel: rel, perm: perm, data: buf, f: f})
	return nil
}

// archiveReadEntry reads the whole content of the entry hdr, len(buf)
// bytes, into buf.
func archiveReadEntry(tr *tar.Reader, hdr *tar.Header, buf []byte) error {
	read := 0
	for read < len(buf) {
		n, err := tr.Read(buf[read:])
		read += n
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return archiveStreamError(err)
		}
	}
	if read != len(buf) {
		return entryErrorf(ErrInvalidArchive, hdr.Name, "entry %q is truncated: %d of %d bytes", hdr.Name, read, hdr.Size)
	}
	return nil
}

// setDigest records the sha256 of the file rel (under <Name>/) and the
// file's identity once it was written.
func (x *archiveExtraction) setDigest(rel, digest string, id fileID) {
	x.writtenMu.Lock()
	defer x.writtenMu.Unlock()
	x.written[rel] = treeFileStamp{fileID: id, digest: digest}
}

// fill copies the entry's data into f (created with mode perm), sets perm
// exactly whatever the umask, and returns the data's sha256. It keeps a copy
// of SHA256SUMS in x.sums.
func (x *archiveExtraction) fill(ctx context.Context, f *os.File, tr *tar.Reader, hdr *tar.Header, perm os.FileMode, isSums bool) (string, error) {
	if err := f.Chmod(perm); err != nil {
		return "", fmt.Errorf("set mode of %q: %w", hdr.Name, err)
	}
	x.fileHash.Reset()
	var written int64
	for written < hdr.Size {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		chunk := x.buf.get(hdr.Size - written)
		n, rerr := tr.Read(chunk)
		if n > 0 {
			x.fileHash.Write(chunk[:n])
			if isSums {
				x.sums = append(x.sums, chunk[:n]...)
			}
			if _, werr := f.Write(chunk[:n]); werr != nil {
				return "", fmt.Errorf("write %q: %w", hdr.Name, werr)
			}
			written += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return "", archiveStreamError(rerr)
		}
	}
	if written != hdr.Size {
		return "", entryErrorf(ErrInvalidArchive, hdr.Name, "entry %q is truncated: %d of %d bytes", hdr.Name, written, hdr.Size)
	}
	if err := archiveAfterFile(f, x.noSync); err != nil {
		return "", fmt.Errorf("flush %q: %w", hdr.Name, err)
	}
	return hex.EncodeToString(x.fileHash.Sum(x.sumBuf[:0])), nil
}

// verify checks the extracted tree against SHA256SUMS and the pinned
// checksum, and requires machine.yaml.
func (x *archiveExtraction) verify() (Sums, error) {
	name := x.want.Name
	got, ok := x.written[SumsFile]
	if !ok {
		return nil, archiveErrorf(ErrInvalidArchive, "archive has no %s/%s", name, SumsFile)
	}
	if got.digest != x.want.VerifyChecksum {
		return nil, archiveErrorf(ErrChecksumMismatch, "%s sha256 mismatch: got %s, want %s", SumsFile, got.digest, x.want.VerifyChecksum)
	}
	sums, err := ParseSums(bytes.NewReader(x.sums))
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(x.written))
	for rel := range x.written {
		if rel != SumsFile {
			files = append(files, rel)
		}
	}
	slices.Sort(files)
	problems := sumsSetProblems(sums, files, name)
	for _, rel := range files {
		want, listed := sums[rel]
		if got := x.written[rel].digest; listed && got != want {
			problems = append(problems, sumsDigestMismatch(name, rel, got, want))
		}
	}
	if err := archiveJoin(ErrSumsMismatch, problems); err != nil {
		return nil, err
	}
	if _, ok := x.written[MachineFile]; !ok {
		return nil, archiveErrorf(ErrInvalidArchive, "archive has no %s/%s", name, MachineFile)
	}
	return sums, nil
}

// sumsSetProblems compares the sorted list of regular files (relative to
// the tree, SHA256SUMS excluded) with the files sums lists. Paths in the
// errors are prefixed with prefix + "/" when prefix is not empty.
func sumsSetProblems(sums Sums, files []string, prefix string) []error {
	if len(sums) == 0 && len(files) > 0 {
		return []error{archiveErrorf(ErrSumsMismatch, "%s lists 0 of %d files", SumsFile, len(files))}
	}
	var problems []error
	present := make(map[string]bool, len(files))
	for _, rel := range files {
		present[rel] = true
		if _, listed := sums[rel]; !listed {
			p := sumsDisplay(prefix, rel)
			problems = append(problems, entryErrorf(ErrSumsMismatch, p, "file not listed in %s: %s", SumsFile, p))
		}
	}
	listed := make([]string, 0, len(sums))
	for rel := range sums {
		if !present[rel] {
			listed = append(listed, rel)
		}
	}
	slices.Sort(listed)
	for _, rel := range listed {
		p := sumsDisplay(prefix, rel)
		problems = append(problems, entryErrorf(ErrSumsMismatch, p, "file listed in %s is missing: %s", SumsFile, p))
	}
	return problems
}

// sumsDigestMismatch reports a file whose content differs from SHA256SUMS.
func sumsDigestMismatch(prefix, rel, got, want string) error {
	p := sumsDisplay(prefix, rel)
	return entryErrorf(ErrSumsMismatch, p, "sha256 mismatch for %s: got %s, want %s", p, got, want)
}

func sumsDisplay(prefix, rel string) string {
	if prefix == "" {
		return rel
	}
	return prefix + "/" + rel
}

// archiveCheckEmpty fails unless the root directory is empty.
func archiveCheckEmpty(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(names) > 0 {
		return errors.New("not empty")
	}
	return nil
}

// archiveClearStage removes everything inside the root directory.
func archiveClearStage(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("clean stage: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("clean stage: %w", err)
	}
	var errs []error
	for _, n := range names {
		if err := root.RemoveAll(n); err != nil {
			errs = append(errs, fmt.Errorf("clean stage: %w", err))
		}
	}
	return errors.Join(errs...)
}

// archiveFinishTree gives every created directory mode 0755 whatever the
// umask, then flushes the tree to stable storage unless noSync is set.
func archiveFinishTree(root *os.Root, dirs []string, noSync bool) error {
	for _, d := range dirs {
		if err := archiveFinishDir(root, d, noSync); err != nil {
			return err
		}
	}
	if noSync {
		return nil
	}
	if err := archiveSyncAll(root); err != nil {
		return fmt.Errorf("flush stage: %w", err)
	}
	return nil
}

func archiveFinishDir(root *os.Root, d string, noSync bool) error {
	f, err := root.Open(d)
	if err != nil {
		return fmt.Errorf("open directory %q: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat directory %q: %w", d, err)
	}
	if fi.Mode().Perm() != 0o755 {
		if err := f.Chmod(0o755); err != nil {
			return fmt.Errorf("set mode of directory %q: %w", d, err)
		}
	}
	if noSync {
		return nil
	}
	if err := archiveSyncDir(f); err != nil {
		return fmt.Errorf("flush directory %q: %w", d, err)
	}
	return nil
}
