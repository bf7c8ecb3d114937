package packer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Expect pins the archive [ExtractArchive] must find: its top-level
// directory and the two checksums a spec entry carries.
type Expect struct {
	// Name is the archive's single top-level directory, the machine name.
	Name string
	// Checksum is the sha256 (hex) of the archive bytes.
	Checksum string
	// VerifyChecksum is the sha256 (hex) of <Name>/SHA256SUMS.
	VerifyChecksum string
}

// ExtractOptions tunes [ExtractArchive]. The zero value is the safe default.
type ExtractOptions struct {
	// Limits bounds sizes and counts; zero fields take [DefaultLimits].
	Limits Limits
	// NoSync skips flushing the extracted tree to stable storage. Only for
	// callers that flush the file system themselves, and for tests.
	NoSync bool
	// SizeHint is the archive's size in bytes when it is known (a spec
	// entry's declared size), 0 when not: the buffer the archive is read
	// through is sized to it (a few KiB for a small machine, instead of
	// 256 KiB allocated and zeroed for every install). It is only a hint:
	// Limits.MaxArchiveSize is the bound.
	SizeHint int64
}

// Extracted describes a verified machine directory in the stage.
type Extracted struct {
	// Dir is the machine directory: <stage>/<Name>.
	Dir string
	// Sums is the parsed <Name>/SHA256SUMS.
	Sums Sums
	// Files is the number of regular files listed in SHA256SUMS.
	Files int
	// Size is the total size of all regular files, SHA256SUMS included.
	Size int64
	// ArchiveSize is the number of compressed bytes read.
	ArchiveSize int64

	// verifyChecksum is the sha256 of SHA256SUMS; stamps holds the digest
	// and the identity of each file once it was written, every one of them
	// checked against Sums, for [TreeVerifier.Adopt].
	verifyChecksum string
	stamps         map[string]treeFileStamp
}

// archiveMaxTarPadding bounds the zero padding accepted after the end of
// the tar stream (tar writers pad to their record size, 10 KiB by default).
const archiveMaxTarPadding = 1 << 20

// archiveCopyBufSize is the size of the buffer entries are copied with.
const archiveCopyBufSize = 256 << 10

// ExtractArchive reads a machine archive (tar.gz) from r in one pass and
// extracts it into the existing, empty directory stage: it hashes the
// compressed stream while reading it, gunzips and untars it into stage
// (never by joining paths: directories through an [os.Root], each file
// with one open relative to the stage that cannot leave it, openat2(2)
// with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS on Linux, else relative to
// an os.Root of its directory), hashes every file while writing it, and
// then verifies the result.
//
// Every entry must be a regular file or directory under <want.Name>/ with a
// clean local name (one leading "./" and one trailing "/" are stripped;
// a "./" root entry is ignored); links, devices, FIFOs, sparse files,
// duplicates and case-insensitive collisions are rejected with an
// [EntryError] that wraps [ErrUnsafeEntry], and the [Limits] are enforced
// before any byte is written ([ErrArchiveTooLarge]). Files are created 0644,
// or 0755 when the entry has any execute bit; directories 0755. Owners,
// times, xattrs and special bits in the archive are ignored. Zero padding
// after the tar end is accepted; any other trailing data is not.
//
// After the stream: the archive's sha256 must equal want.Checksum and
// <Name>/SHA256SUMS's sha256 must equal want.VerifyChecksum
// ([ErrChecksumMismatch]); the regular files other than SHA256SUMS must be
// exactly those it lists, with matching digests ([ErrSumsMismatch]); and
// <Name>/machine.yaml must exist. Then the tree is flushed to stable storage
// unless opts.NoSync is set: on Linux with one syncfs(2) of the stage's
// file system once the tree verifies, elsewhere with an fsync of each file
// as it is written and of each directory at the end. Either way, when
// ExtractArchive returns every byte and directory entry of the tree is
// durable, so a caller that publishes it with a rename (see the manager's
// swap) never exposes, after a crash, a tree whose files lost their data.
//
// When extraction fails part-way, the rest of r is read through the hash
// (within Limits.MaxArchiveSize): if the archive's sha256 does not match
// want.Checksum either, the error is that [ErrChecksumMismatch], naming
// the extraction failure as detail, because a wrong or corrupted download
// is the cause and the archive's content is not what the operator pinned.
//
// On any error the content of stage is removed; stage itself, which the
// caller owns, stays. Nothing outside stage is ever written.
//
// Inflating runs in a goroutine of its own, ahead of the file system work;
// files up to 512 KiB are read whole and handed to a few writer goroutines
// (one per CPU, two to four) that create, write and hash them, while
// larger files are written as they are read; so creating files, a system
// call that can cost as much as inflating their content, overlaps the
// inflating. r is read to the end of the gzip
// stream plus one byte (or to the first error, then on to its end to check
// the hash, as above), never after ExtractArchive returns, and is not
// closed. Cancelling ctx stops the extraction at the next read or entry; a
// Read blocked in r is only interrupted if r itself honours ctx (an HTTP
// response body of a request made with ctx does).
func ExtractArchive(ctx context.Context, r io.Reader, stage string, want Expect, opts ExtractOptions) (*Extracted, error) {
	return extractArchive(ctx, r, stage, want, opts, newArchiveCreator)
}

// extractArchive is ExtractArchive creating files with the creator
// newCreator returns for the stage.
func extractArchive(ctx context.Context, r io.Reader, stage string, want Expect, opts ExtractOptions,
	newCreator func(*os.Root) archiveCreator) (*Extracted, error) {
	want, err := want.normalized()
	if err != nil {
		return nil, fmt.Errorf("extract archive: %w", err)
	}
	root, err := os.OpenRoot(stage)
	if err != nil {
		return nil, fmt.Errorf("extract archive %q: open stage: %w", want.Name, err)
	}
	defer root.Close()
	if err := archiveCheckEmpty(root); err != nil {
		return nil, fmt.Errorf("extract archive %q: stage %s: %w", want.Name, stage, err)
	}

	x := &archiveExtraction{
		root:     root,
		want:     want,
		limits:   opts.Limits.withDefaults(),
		noSync:   opts.NoSync,
		sizeHint: opts.SizeHint,
		entries:  newArchiveEntrySet(),
		written:  make(map[string]treeFileStamp),
		made:     make(map[string]bool),
		fileHash: sha256.New(),
		creator:  newCreator(root),
	}
	res, err := x.run(ctx, r)
	if err != nil {
		if cerr := archiveClearStage(root); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("extract archive %q: %w", want.Name, err)
	}
	res.Dir = filepath.Join(stage, want.Name)
	return res, nil
}

// normalized validates e and lowercases its checksums.
func (e Expect) normalized() (Expect, error) {
	if err := archiveCheckMachineName(e.Name); err != nil {
		return e, err
	}
	sum, ok := sumsLowerHex([]byte(e.Checksum))
	if !ok {
		return e, fmt.Errorf("expected archive checksum %q is not 64 hex digits", e.Checksum)
	}
	verify, ok := sumsLowerHex([]byte(e.VerifyChecksum))
	if !ok {
		return e, fmt.Errorf("expected SHA256SUMS checksum %q is not 64 hex digits", e.VerifyChecksum)
	}
	e.Checksum, e.VerifyChecksum = sum, verify
	return e, nil
}

// archiveExtraction is the state of one ExtractArchive call.
type archiveExtraction struct {
	root     *os.Root
	want     Expect
	limits   Limits
	noSync   bool
	sizeHint int64
	entries  *archiveEntrySet
	made     map[string]bool // directories created on disk
	dirs     []string        // the same, in creation order
	sums     []byte          // content of <Name>/SHA256SUMS
	total    int64
	count    int
	buf      copyBuf
	fileHash hash.Hash
	sumBuf   [sha256.Size]byte
	creator  archiveCreator
	pool     *archivePool

	writtenMu sync.Mutex
	// written maps the path under <Name>/ of each regular file to its
	// hex sha256 and its identity once written.
	written map[string]treeFileStamp
}

func (x *archiveExtraction) run(ctx context.Context, r io.Reader) (*Extracted, error) {
	stream := startArchiveStream(ctx, r, x.limits.MaxArchiveSize, x.sizeHint)
	x.pool = startArchivePool(ctx, x)
	err := x.untar(ctx, stream)
	if perr := x.pool.wait(); err == nil {
		err = perr
	}
	x.creator.close()
	stream.stop()
	if err != nil {
		if errors.Is(err, errArchiveCanceled) || errors.Is(err, ctx.Err()) {
			return nil, context.Cause(ctx)
		}
		return nil, x.blame(stream, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	got := hex.EncodeToString(stream.hr.h.Sum(nil))
	if got != x.want.Checksum {
		return nil, archiveErrorf(ErrChecksumMismatch, "sha256 mismatch: got %s, want %s", got, x.want.Checksum)
	}
	sums, err := x.verify()
	if err != nil {
		return nil, err
	}
	if err := archiveFinishTree(x.root, x.dirs, x.noSync); err != nil {
		return nil, err
	}
	return &Extracted{Sums: sums, Files: len(sums), Size: x.total, ArchiveSize: stream.hr.n,
		verifyChecksum: x.want.VerifyChecksum, stamps: x.written}, nil
}

// blame returns the error to report for an extraction that failed with
// err. When the archive's sha256 does not match either, the mismatch is the
// root cause (a wrong, truncated or corrupted download, not a bad archive
// from the operator), so it is what the error says, with err as detail.
// The rest of the archive is read through the hash to tell, within the
// archive size cap; if that read fails, err stands.
func (x *archiveExtraction) blame(s *archiveStream, err error) error {
	if _, derr := io.Copy(io.Discard, s.hr); derr != nil {
		return err
	}
	got := hex.EncodeToString(s.hr.h.Sum(nil))
	if got == x.want.Checksum {
		return err
	}
	return archiveErrorf(ErrChecksumMismatch, "sha256 mismatch: got %s, want %s (extracting it failed too: %v)", got, x.want.Checksum, err)
}

// untar extracts every entry of the decompressed tar stream and checks
// that only zero padding follows its end.
func (x *archiveExtraction) untar(ctx context.Context, stream io.Reader) error {
	tr := tar.NewReader(stream)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return archiveStreamError(err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.entry(ctx, tr, hdr); err != nil {
			return err
		}
	}
	return x.drainPadding(stream)
}

// drainPadding reads the rest of the decompressed stream after the tar end,
// which may only be a bounded amount of zero padding.
func (x *archiveExtraction) drainPadding(gz io.Reader) error {
	var seen int64
	buf := x.buf.get(archiveMinBufSize) // tar writers pad to 10 KiB
	for {
		n, err := gz.Read(buf)
		seen += int64(n)
		if seen > archiveMaxTarPadding || !archiveAllZero(buf[:n]) {
			return archiveErrorf(ErrInvalidArchive, "trailing data after the end of the tar archive")
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return archiveStreamError(err)
		}
	}
}

// entry validates one tar header and extracts it.
func (x *archiveExtraction) entry(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	x.count++
	if x.count > x.limits.MaxEntries {
		return entryErrorf(ErrArchiveTooLarge, hdr.Name, "too many entries: more than %d", x.limits.MaxEntries)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return archiveCheckGlobalHeader(hdr)
	}
	n := archiveNormalizeName(hdr.Name)
	if (n == "" || n == ".") && hdr.Typeflag == tar.TypeDir {
		return nil // the "./" entry of `tar -C dir .`
	}
	if reason := archiveCheckPath(n); reason != "" {
		return unsafeEntry(hdr.Name, "%s", reason)
	}
	if n != x.want.Name && !strings.HasPrefix(n, x.want.Name+"/") {
		return unsafeEntry(hdr.Name, "outside the top-level directory %q", x.want.Name)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return unsafeEntry(hdr.Name, "sparse entries not allowed")
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.entries.addDir(n); err != nil {
			return err
		}
		return x.mkdirAll(n)
	case tar.TypeReg:
		if n == x.want.Name {
			return unsafeEntry(hdr.Name, "top-level entry must be a directory")
		}
		if err := x.entries.addFile(n); err != nil {
			return err
		}
		return x.file(ctx, tr, hdr, n)
	}
	return unsafeEntry(hdr.Name, "%s not allowed", archiveTypeName(hdr.Typeflag))
}

// archiveCheckGlobalHeader accepts a global PAX header that carries only a
// comment (as `git archive` writes) and rejects any other.
func archiveCheckGlobalHeader(hdr *tar.Header) error {
	for k := range hdr.PAXRecords {
		if k != "comment" {
			return unsafeEntry(hdr.Name, "global PAX header record %q not allowed", k)
		}
	}
	return nil
}

// archiveTypeName names a tar type flag for error messages.
func archiveTypeName(flag byte) string {
	switch flag {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeGNUSparse:
		return "sparse entry"
	}
	return fmt.Sprintf("entry type %q", flag)
}

// mkdirAll creates the directory d and its parents inside the root.
func (x *archiveExtraction) mkdirAll(d string) error {
	if x.made[d] {
		return nil
	}
	if err := x.root.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("create directory %q: %w", d, err)
	}
	var added []string
	for q := d; q != "." && !x.made[q]; q = path.Dir(q) {
		x.made[q] = true
		added = append(added, q)
	}
	for i := len(added) - 1; i >= 0; i-- {
		x.dirs = append(x.dirs, added[i])
	}
	return nil
}

// archiveAllZero reports whether b holds only zero bytes.
func archiveAllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
