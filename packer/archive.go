package packer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"
)

// ArchiveInfo describes an archive written by [CreateArchive]: what a spec
// entry needs to pin it.
type ArchiveInfo struct {
	// Name is the archive's top-level directory, the machine name.
	Name string
	// Checksum is the sha256 (lowercase hex) of the tar.gz bytes.
	Checksum string
	// VerifyChecksum is the sha256 (lowercase hex) of <Name>/SHA256SUMS.
	VerifyChecksum string
	// Size is the length of the tar.gz in bytes.
	Size int64
	// Files is the number of regular files listed in SHA256SUMS.
	Files int
}

// archiveSourceEntry is one file or directory of the source tree.
type archiveSourceEntry struct {
	rel  string // path relative to the source directory
	dir  bool
	mode int64 // 0o755 or 0o644
	size int64
}

// archiveEpoch is the modification time of every entry: the Unix epoch.
var archiveEpoch = time.Unix(0, 0)

// CreateArchive writes the machine in dir to w as a deterministic tar.gz
// whose single top-level directory is <name>/, and returns what a spec
// entry needs to pin it.
//
// dir must contain machine.yaml and only regular files and directories; a
// symlink or any other file type is an error naming it, and so is a name
// [ExtractArchive] would reject. The archive starts with <name>/ and
// <name>/SHA256SUMS, which lists every regular file relative to <name>/ (a
// SHA256SUMS already in dir is replaced by it), followed by every directory
// and file in lexical walk order. Entries have uid and gid 0, no user or
// group names, the Unix epoch as modification time, and mode 0755 (dirs and
// files with any execute bit) or 0644. The same tree therefore always gives
// the same bytes, and so the same Checksum, with a given mms version.
//
// A file that changes while it is archived is an error. On error, w may
// have received part of an archive; write to a temporary file and rename it
// once CreateArchive succeeds.
func CreateArchive(ctx context.Context, dir, name string, w io.Writer) (ArchiveInfo, error) {
	if err := archiveCheckMachineName(name); err != nil {
		return ArchiveInfo{}, fmt.Errorf("create archive: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("create archive %q: %w", name, err)
	}
	defer root.Close()

	entries, err := archiveScanSource(ctx, root, name)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("create archive %q from %s: %w", name, dir, err)
	}
	sums, err := archiveHashSource(ctx, root, entries)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("create archive %q from %s: %w", name, dir, err)
	}
	sumsData, err := sums.Bytes()
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("create archive %q: %w", name, err)
	}
	hw := &archiveHashWriter{w: w, h: sha256.New()}
	if err := archiveWriteTar(ctx, root, name, entries, sums, sumsData, hw); err != nil {
		return ArchiveInfo{}, fmt.Errorf("create archive %q from %s: %w", name, dir, err)
	}
	verify := sha256.Sum256(sumsData)
	return ArchiveInfo{
		Name:           name,
		Checksum:       hex.EncodeToString(hw.h.Sum(nil)),
		VerifyChecksum: hex.EncodeToString(verify[:]),
		Size:           hw.n,
		Files:          len(sums),
	}, nil
}

// archiveScanSource walks the source tree in lexical order and checks
// every entry the way ExtractArchive will.
func archiveScanSource(ctx context.Context, root *os.Root, name string) ([]archiveSourceEntry, error) {
	set := newArchiveEntrySet()
	if err := set.addDir(name); err != nil {
		return nil, err
	}
	if err := set.addFile(name + "/" + SumsFile); err != nil {
		return nil, err
	}
	var entries []archiveSourceEntry
	err := fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if rel == "." || rel == SumsFile && d.Type().IsRegular() {
			return nil
		}
		p := name + "/" + rel
		if reason := archiveCheckPath(p); reason != "" {
			return unsafeEntry(p, "%s", reason)
		}
		switch {
		case d.IsDir():
			entries = append(entries, archiveSourceEntry{rel: rel, dir: true, mode: 0o755})
			return archiveNilEntryError(set.addDir(p))
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			entries = append(entries, archiveSourceEntry{rel: rel, mode: mode, size: info.Size()})
			return archiveNilEntryError(set.addFile(p))
		case d.Type()&fs.ModeSymlink != 0:
			return unsafeEntry(p, "symlink not allowed")
		}
		return unsafeEntry(p, "file type %s not allowed", d.Type())
	})
	if err != nil {
		return nil, err
	}
	if !set.files[name+"/"+MachineFile] {
		return nil, archiveErrorf(ErrInvalidArchive, "no %s", MachineFile)
	}
	return entries, nil
}

// archiveNilEntryError keeps a nil *EntryError from becoming a non-nil error.
func archiveNilEntryError(err *EntryError) error {
	if err == nil {
		return nil
	}
	return err
}

// archiveHashSource hashes every regular file of the source tree.
func archiveHashSource(ctx context.Context, root *os.Root, entries []archiveSourceEntry) (Sums, error) {
	sums := make(Sums)
	h := sha256.New()
	for i := range entries {
		e := &entries[i]
		if e.dir {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h.Reset()
		n, err := archiveCopyFile(root, e.rel, h, -1)
		if err != nil {
			return nil, err
		}
		e.size = n
		sums[e.rel] = hex.EncodeToString(h.Sum(nil))
	}
	return sums, nil
}

// archiveCopyFile copies the file rel to w and returns its length. When
// size is not negative, exactly size bytes are copied and a file of another
// length is an error.
func archiveCopyFile(root *os.Root, rel string, w io.Writer, size int64) (int64, error) {
	f, err := root.Open(rel)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if size < 0 {
		n, err := io.Copy(w, f)
		if err != nil {
			return n, fmt.Errorf("read %q: %w", rel, err)
		}
		return n, nil
	}
	n, err := io.CopyN(w, f, size)
	if err != nil {
		return n, fmt.Errorf("read %q: file changed while archiving: %w", rel, err)
	}
	return n, nil
}

// archiveWriteTar writes the archive: the top-level directory, SHA256SUMS,
// then every entry, each file checked against the digest it was listed with.
func archiveWriteTar(ctx context.Context, root *os.Root, name string, entries []archiveSourceEntry, sums Sums, sumsData []byte, w io.Writer) error {
	gz, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(archiveHeader(name, true, 0o755, 0)); err != nil {
		return err
	}
	if err := tw.WriteHeader(archiveHeader(name+"/"+SumsFile, false, 0o644, int64(len(sumsData)))); err != nil {
		return err
	}
	if _, err := tw.Write(sumsData); err != nil {
		return err
	}
	h := sha256.New()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tw.WriteHeader(archiveHeader(name+"/"+e.rel, e.dir, e.mode, e.size)); err != nil {
			return err
		}
		if e.dir {
			continue
		}
		h.Reset()
		if _, err := archiveCopyFile(root, e.rel, io.MultiWriter(tw, h), e.size); err != nil {
			return err
		}
		if hex.EncodeToString(h.Sum(nil)) != sums[e.rel] {
			return fmt.Errorf("read %q: file changed while archiving", e.rel)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// archiveHeader returns the normalized header of one entry.
func archiveHeader(p string, dir bool, mode, size int64) *tar.Header {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: size, ModTime: archiveEpoch}
	if dir {
		hdr.Typeflag = tar.TypeDir
		hdr.Name = p + "/"
	}
	return hdr
}

// archiveHashWriter passes writes to w, hashing and counting them.
type archiveHashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *archiveHashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}
