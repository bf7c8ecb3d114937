package packer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hexSum returns the sha256 of s as lowercase hex.
func hexSum(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

var (
	digestA = hexSum("a")
	digestB = hexSum("b")
)

// sumsParseTests are the ParseSums cases; FuzzParseSums is seeded from them.
var sumsParseTests = []struct {
	name    string
	in      string
	want    Sums
	wantErr string
}{
	{name: "text mode", in: digestA + "  a\n" + digestB + "  dir/b\n", want: Sums{"a": digestA, "dir/b": digestB}},
	{name: "binary marker", in: digestA + " *bin/run\n", want: Sums{"bin/run": digestA}},
	{name: "uppercase hex stored lowercase", in: strings.ToUpper(digestA) + "  a\n", want: Sums{"a": digestA}},
	{name: "CRLF", in: digestA + "  a\r\n" + digestB + "  b\r\n", want: Sums{"a": digestA, "b": digestB}},
	{name: "blank lines", in: "\n" + digestA + "  a\n  \n\r\n\t\n", want: Sums{"a": digestA}},
	{name: "no final newline", in: digestA + "  a", want: Sums{"a": digestA}},
	{name: "spaces in names", in: digestA + "  my file.txt\n", want: Sums{"my file.txt": digestA}},
	{name: "name starting with a space", in: digestA + "   a\n", want: Sums{" a": digestA}},
	{name: "empty", in: "", want: Sums{}},
	{name: "dotdot inside a name is fine", in: digestA + "  foo..bar\n", want: Sums{"foo..bar": digestA}},
	{name: "one space", in: digestA + " a\n", wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`},
	{name: "tab separator", in: digestA + "\t a\n", wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`},
	{name: "short digest", in: digestA[:63] + "  a\n", wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`},
	{name: "non-hex digest", in: "g" + digestA[1:] + "  a\n", wantErr: "invalid SHA256SUMS: line 1: digest is not 64 hex digits"},
	{name: "bsd format", in: "SHA256 (a) = " + digestA + "\n", wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`},
	{name: "missing path", in: digestA + "  \n", wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`},
	{name: "parent", in: digestA + "  ../a\n", wantErr: `invalid SHA256SUMS: line 1: path "../a": path is not local`},
	{name: "absolute", in: digestA + "  /etc/passwd\n", wantErr: `invalid SHA256SUMS: line 1: path "/etc/passwd": absolute path not allowed`},
	{name: "dot slash", in: digestA + "  ./a\n", wantErr: `invalid SHA256SUMS: line 1: path "./a": path is not clean`},
	{name: "trailing slash", in: digestA + "  a/\n", wantErr: `invalid SHA256SUMS: line 1: path "a/": path is not clean`},
	{name: "double slash", in: digestA + "  a//b\n", wantErr: `invalid SHA256SUMS: line 1: path "a//b": path is not clean`},
	{name: "dot", in: digestA + "  .\n", wantErr: `invalid SHA256SUMS: line 1: path ".": empty path`},
	{name: "backslash", in: digestA + `  a\b` + "\n", wantErr: `invalid SHA256SUMS: line 1: path "a\\b": name contains a backslash`},
	{name: "escaped sha256sum line", in: `\` + digestA + `  a\nb` + "\n", wantErr: `invalid SHA256SUMS: line 1: malformed line (want "<64 hex digits>  <path>")`},
	{name: "NUL", in: digestA + "  a\x00b\n", wantErr: `invalid SHA256SUMS: line 1: path "a\x00b": name contains a control character`},
	{name: "invalid UTF-8", in: digestA + "  a\xffb\n", wantErr: `invalid SHA256SUMS: line 1: path "a\xffb": name is not valid UTF-8`},
	{name: "lists itself", in: digestA + "  SHA256SUMS\n", wantErr: `invalid SHA256SUMS: line 1: path "SHA256SUMS": SHA256SUMS may not list itself`},
	{name: "duplicate", in: digestA + "  a\n" + digestB + "  b\n" + digestB + "  a\n", wantErr: `invalid SHA256SUMS: line 3: duplicate path "a" (first on line 1)`},
	{
		name:    "every problem reported",
		in:      digestA + "  ../a\n" + digestA + "  ok\nxyz\n",
		wantErr: "invalid SHA256SUMS: line 1: path \"../a\": path is not local\ninvalid SHA256SUMS: line 3: malformed line (want \"<64 hex digits>  <path>\")",
	},
	{name: "line too long", in: digestA + "  " + strings.Repeat("a", 5000) + "\n", wantErr: "invalid SHA256SUMS: line 1: line longer than 4162 bytes"},
}

func TestParseSums(t *testing.T) {
	for _, tt := range sumsParseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSums(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseSums(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidSums) {
					t.Errorf("ParseSums(%q) error %v does not wrap ErrInvalidSums", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSums(%q) error = %v, want nil", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSums(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseSumsCaps(t *testing.T) {
	tests := []struct {
		name    string
		in      func() string
		wantErr string
	}{
		{
			name: "too many lines",
			in: func() string {
				var b strings.Builder
				for i := range MaxSumsLines + 1 {
					fmt.Fprintf(&b, "%s  f%d\n", digestA, i)
				}
				return b.String()
			},
			wantErr: fmt.Sprintf("invalid SHA256SUMS: more than %d lines", MaxSumsLines),
		},
		{
			name: "too large",
			in: func() string {
				return strings.Repeat(strings.Repeat(" ", 4000)+"\n", MaxSumsSize/4000+1)
			},
			wantErr: fmt.Sprintf("invalid SHA256SUMS: larger than %d bytes", MaxSumsSize),
		},
		{
			name: "too many problems",
			in: func() string {
				return strings.Repeat("bad\n", 50)
			},
			wantErr: "and 1 more",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSums(strings.NewReader(tt.in()))
			if err == nil || !strings.HasSuffix(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidSums) {
				t.Fatalf("ParseSums() error = %v, want one ending in %q", err, tt.wantErr)
			}
		})
	}
}

func TestSumsWriteTo(t *testing.T) {
	sums := Sums{"b": digestB, "a": digestA, "dir/c d": digestA}
	var buf bytes.Buffer
	n, err := sums.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo() error = %v", err)
	}
	want := digestA + "  a\n" + digestB + "  b\n" + digestA + "  dir/c d\n"
	if buf.String() != want || n != int64(len(want)) {
		t.Fatalf("WriteTo() = %d, %q, want %d, %q", n, buf.String(), len(want), want)
	}
	back, err := ParseSums(&buf)
	if err != nil {
		t.Fatalf("ParseSums(WriteTo()) error = %v", err)
	}
	if diff := cmp.Diff(sums, back); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestSumsWriteToRejects(t *testing.T) {
	tests := []struct {
		name    string
		sums    Sums
		wantErr string
	}{
		{name: "parent path", sums: Sums{"../a": digestA}, wantErr: `write SHA256SUMS: path "../a": path is not local`},
		{name: "newline in path", sums: Sums{"a\nb": digestA}, wantErr: `write SHA256SUMS: path "a\nb": name contains a control character`},
		{name: "itself", sums: Sums{SumsFile: digestA}, wantErr: `write SHA256SUMS: path "SHA256SUMS": SHA256SUMS may not list itself`},
		{name: "uppercase digest", sums: Sums{"a": strings.ToUpper(digestA)}, wantErr: `write SHA256SUMS: path "a": digest is not 64 lowercase hex digits`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := tt.sums.WriteTo(&buf)
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrInvalidSums) {
				t.Fatalf("WriteTo() error = %v, want %q", err, tt.wantErr)
			}
			if buf.Len() != 0 {
				t.Errorf("WriteTo() wrote %q on error, want nothing", buf.String())
			}
		})
	}
}
