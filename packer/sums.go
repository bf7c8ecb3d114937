package packer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

const (
	// MaxSumsSize is the largest SHA256SUMS file ParseSums accepts, in bytes.
	MaxSumsSize = 16 << 20
	// MaxSumsLines is the largest number of lines ParseSums accepts.
	MaxSumsLines = 100_000
	// sumsMaxLineLen bounds one line: a digest, two separator bytes and a
	// path of up to 4 KiB.
	sumsMaxLineLen = 64 + 2 + 4096
)

// Sums is the content of a SHA256SUMS file: slash-separated paths, relative
// to the directory that holds the file, mapped to lowercase hex sha256
// digests.
type Sums map[string]string

// ParseSums reads a SHA256SUMS file in the format of coreutils sha256sum:
// one line per file holding 64 hex digits, two spaces and the path, or
// the digits, one space and "*<path>" (the binary-mode marker). Hex digits may be upper or lower case and are stored
// lower case; CRLF line ends and blank lines are accepted.
//
// Every path must be a clean local slash-separated path (fs.ValidPath, no
// backslash, NUL or control character, valid UTF-8); it may appear only once
// and may not be SHA256SUMS itself. The file may hold at most MaxSumsLines
// lines and MaxSumsSize bytes. Every problem is reported, each naming its
// line number, in one error that wraps [ErrInvalidSums].
func ParseSums(r io.Reader) (Sums, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxSumsSize+1), sumsMaxLineLen+len("\r\n"))
	sums := make(Sums)
	firstLine := make(map[string]int)
	var problems []error
	var read int64
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			problems = append(problems, sumsLineError(lineNo, "line longer than %d bytes", sumsMaxLineLen))
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read SHA256SUMS: %w", err)
		}
		if read > MaxSumsSize {
			problems = append(problems, archiveErrorf(ErrInvalidSums, "invalid SHA256SUMS: larger than %d bytes", MaxSumsSize))
			break
		}
		if lineNo > MaxSumsLines && len(line) > 0 {
			problems = append(problems, archiveErrorf(ErrInvalidSums, "invalid SHA256SUMS: more than %d lines", MaxSumsLines))
			break
		}
		if problem := sums.addLine(lineNo, line, firstLine); problem != nil {
			problems = append(problems, problem)
		}
		if err != nil || len(problems) > archiveMaxReported {
			break
		}
	}
	if len(problems) > 0 {
		return nil, archiveJoin(ErrInvalidSums, problems)
	}
	return sums, nil
}

// addLine parses one line (with its line end) into s.
func (s Sums) addLine(lineNo int, line []byte, firstLine map[string]int) error {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > sumsMaxLineLen {
		return sumsLineError(lineNo, "line longer than %d bytes", sumsMaxLineLen)
	}
	if len(bytes.TrimLeft(line, " \t")) == 0 {
		return nil
	}
	if len(line) < 64+3 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') {
		return sumsLineError(lineNo, `malformed line (want "<64 hex digits>  <path>")`)
	}
	digest, ok := sumsLowerHex(line[:64])
	if !ok {
		return sumsLineError(lineNo, "digest is not 64 hex digits")
	}
	p := string(line[66:])
	if reason := sumsCheckPath(p); reason != "" {
		return sumsLineError(lineNo, "path %q: %s", p, reason)
	}
	if prev, dup := firstLine[p]; dup {
		return sumsLineError(lineNo, "duplicate path %q (first on line %d)", p, prev)
	}
	firstLine[p] = lineNo
	s[p] = digest
	return nil
}

// sumsCheckPath reports why p cannot be listed in a SHA256SUMS file, or "".
func sumsCheckPath(p string) string {
	if len(p) > sumsMaxLineLen-66 {
		return "path too long"
	}
	if reason := archiveCheckPathShape(p); reason != "" {
		return reason
	}
	if p == SumsFile {
		return "SHA256SUMS may not list itself"
	}
	return ""
}

func sumsLineError(lineNo int, format string, args ...any) error {
	return archiveErrorf(ErrInvalidSums, "invalid SHA256SUMS: line %d: %s", lineNo, fmt.Sprintf(format, args...))
}

// sumsLowerHex returns b as lowercase hex when it is exactly 64 hex digits.
func sumsLowerHex(b []byte) (string, bool) {
	if len(b) != 64 {
		return "", false
	}
	out := make([]byte, 64)
	for i, c := range b {
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
			out[i] = c
		case 'A' <= c && c <= 'F':
			out[i] = c + ('a' - 'A')
		default:
			return "", false
		}
	}
	return string(out), true
}

// WriteTo writes s in sha256sum text format (digest, two spaces, path), one
// line per file sorted by path, so the output is deterministic and ParseSums reads it
// back unchanged. It refuses a path or digest ParseSums would reject.
func (s Sums) WriteTo(w io.Writer) (int64, error) {
	paths := make([]string, 0, len(s))
	for p, digest := range s {
		if reason := sumsCheckPath(p); reason != "" {
			return 0, archiveErrorf(ErrInvalidSums, "write SHA256SUMS: path %q: %s", p, reason)
		}
		if d, ok := sumsLowerHex([]byte(digest)); !ok || d != digest {
			return 0, archiveErrorf(ErrInvalidSums, "write SHA256SUMS: path %q: digest is not 64 lowercase hex digits", p)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var buf bytes.Buffer
	for _, p := range paths {
		buf.WriteString(s[p])
		buf.WriteString("  ")
		buf.WriteString(p)
		buf.WriteByte('\n')
	}
	n, err := w.Write(buf.Bytes())
	if err != nil {
		return int64(n), fmt.Errorf("write SHA256SUMS: %w", err)
	}
	return int64(n), nil
}

// Bytes returns s as WriteTo writes it.
func (s Sums) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var _ io.WriterTo = Sums(nil)
