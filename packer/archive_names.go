package packer

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

const (
	// SumsFile is the name of the checksum file at the top of every
	// machine directory, in sha256sum format.
	SumsFile = "SHA256SUMS"
	// MachineFile is the name of the machine definition at the top of
	// every machine directory.
	MachineFile = "machine.yaml"

	// MaxEntryNameLen is the longest entry name, in bytes, an archive may
	// hold (the top-level directory included).
	MaxEntryNameLen = 255
	// MaxEntryDepth is the largest number of path elements an entry name
	// may have (the top-level directory included).
	MaxEntryDepth = 16
)

// archiveNormalizeName strips the decorations tar writers commonly add to
// an entry name: one leading "./" and one trailing "/".
func archiveNormalizeName(raw string) string {
	n := strings.TrimPrefix(raw, "./")
	return strings.TrimSuffix(n, "/")
}

// archiveCheckPath reports why the normalized entry name n is unsafe, or ""
// when it is acceptable: archiveCheckPathShape, at most MaxEntryNameLen
// bytes and at most MaxEntryDepth elements.
func archiveCheckPath(n string) string {
	switch {
	case len(n) > MaxEntryNameLen:
		return fmt.Sprintf("name longer than %d bytes", MaxEntryNameLen)
	case strings.Count(n, "/")+1 > MaxEntryDepth:
		return fmt.Sprintf("path deeper than %d levels", MaxEntryDepth)
	}
	return archiveCheckPathShape(n)
}

// archiveCheckPathShape reports why p is not a clean local slash-separated
// path, or "": it must be valid UTF-8 without control characters or
// backslashes, not absolute, with no "..", "." or empty elements
// (fs.ValidPath and filepath.IsLocal), and not "." itself.
func archiveCheckPathShape(p string) string {
	switch {
	case p == "" || p == ".":
		return "empty path"
	case !utf8.ValidString(p):
		return "name is not valid UTF-8"
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "name contains a control character"
	case strings.Contains(p, `\`):
		return "name contains a backslash"
	case strings.HasPrefix(p, "/"):
		return "absolute path not allowed"
	case p == ".." || strings.HasPrefix(p, "../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/../"):
		return "path is not local"
	case !fs.ValidPath(p) || !filepath.IsLocal(p):
		return "path is not clean"
	}
	return ""
}

// archiveCheckMachineName reports whether name can be the top-level
// directory of an archive: a single path element that passes
// archiveCheckPath and does not start with a dot. Validating it as a machine
// name (spec.ValidName) is the caller's job.
func archiveCheckMachineName(name string) error {
	if reason := archiveCheckPath(name); reason != "" {
		return fmt.Errorf("invalid archive name %q: %s", name, reason)
	}
	if strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid archive name %q: must be one path element not starting with a dot", name)
	}
	return nil
}

// archiveEntrySet tracks the paths an archive has produced so far, to
// reject duplicates, files that clash with directories, and names that are
// equal under Unicode case folding and normalization (which would collide
// on case-insensitive or normalizing file systems such as APFS and NTFS).
// It is not safe for concurrent use.
type archiveEntrySet struct {
	files  map[string]bool   // regular files
	dirs   map[string]bool   // directories, explicit or implied by a child
	listed map[string]bool   // directories that had an entry of their own
	folded map[string]string // fold key → the exact path that claimed it
	caser  cases.Caser
}

func newArchiveEntrySet() *archiveEntrySet {
	return &archiveEntrySet{
		files:  make(map[string]bool),
		dirs:   make(map[string]bool),
		listed: make(map[string]bool),
		folded: make(map[string]string),
		caser:  cases.Fold(),
	}
}

// foldKey maps p to a key equal for every spelling a case-insensitive,
// normalizing file system would treat as the same name.
func (s *archiveEntrySet) foldKey(p string) string {
	ascii := true
	for i := range len(p) {
		if p[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(p)
	}
	return norm.NFD.String(s.caser.String(norm.NFD.String(p)))
}

// claim registers p and every parent of p under the fold map, reporting
// the first clash with a different spelling.
func (s *archiveEntrySet) claim(p string) *EntryError {
	for q := p; q != "."; q = path.Dir(q) {
		key := s.foldKey(q)
		if prev, ok := s.folded[key]; ok {
			if prev == q {
				// Parents of q were claimed together with q.
				return nil
			}
			return unsafeEntry(p, "case-insensitive collision with %q", prev)
		}
		s.folded[key] = q
	}
	return nil
}

// addFile registers the regular file p.
func (s *archiveEntrySet) addFile(p string) *EntryError {
	switch {
	case s.files[p]:
		return unsafeEntry(p, "duplicate entry")
	case s.dirs[p]:
		return unsafeEntry(p, "file clashes with a directory of the same name")
	}
	if err := s.checkParents(p); err != nil {
		return err
	}
	if err := s.claim(p); err != nil {
		return err
	}
	s.files[p] = true
	s.addParents(p)
	return nil
}

// addDir registers the directory p, which had an entry of its own.
func (s *archiveEntrySet) addDir(p string) *EntryError {
	switch {
	case s.listed[p]:
		return unsafeEntry(p, "duplicate entry")
	case s.files[p]:
		return unsafeEntry(p, "directory clashes with a file of the same name")
	}
	if err := s.checkParents(p); err != nil {
		return err
	}
	if err := s.claim(p); err != nil {
		return err
	}
	s.listed[p] = true
	s.dirs[p] = true
	s.addParents(p)
	return nil
}

// checkParents rejects p when one of its parents is a regular file.
func (s *archiveEntrySet) checkParents(p string) *EntryError {
	for q := path.Dir(p); q != "."; q = path.Dir(q) {
		if s.files[q] {
			return unsafeEntry(p, "parent %q is a file", q)
		}
	}
	return nil
}

// addParents records every parent of p as a directory.
func (s *archiveEntrySet) addParents(p string) {
	for q := path.Dir(p); q != "." && !s.dirs[q]; q = path.Dir(q) {
		s.dirs[q] = true
	}
}
