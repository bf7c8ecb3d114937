// Package termtext makes text from the network safe to print on a
// terminal. Events, status documents and specs carry strings that anyone
// who can publish on NATS (or sign a spec) chooses; printed raw, an escape
// sequence in them recolours, retitles or clears the operator's terminal,
// a carriage return overwrites what was printed before it on the line, and
// a bidirectional override reorders what the operator reads. [Escape]
// turns every such character into a visible, inert escape.
package termtext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s with every character a terminal would act on rather
// than show replaced by a Go-style escape: control characters (C0, DEL,
// C1: "\x1b", "\r", "\n", "\t", "\u009b"), Unicode format characters
// (bidirectional overrides and isolates, zero-width characters, the byte
// order mark: "\u202e"), the line and paragraph separators, and bytes that
// are not UTF-8 ("\xff"). Everything else, backslashes included, is kept,
// so ordinary text reads as it was written. The result is one line.
func Escape(s string) string {
	i := firstUnsafe(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !actsOn(r):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// firstUnsafe returns the index of the first byte of s that Escape would
// change, or -1.
func firstUnsafe(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || actsOn(r) {
			return i
		}
		i += size
	}
	return -1
}

// actsOn reports whether a terminal acts on r instead of showing it.
func actsOn(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
