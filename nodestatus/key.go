package nodestatus

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mms-io/mms/internal/kvname"
)

// MaxIdentity caps an agent's identity, in bytes, so that its key (at most
// three times as long, see [Key]) stays a short NATS subject token.
const MaxIdentity = 255

// keyEscape starts an escaped byte in a key: "=" and two upper-case hex
// digits.
const keyEscape = '='

// Key returns the KV key of the status document of the agent with this
// identity. The mapping is reversible ([IdentityOf] undoes it), so the key
// a document lives under says whose it is: the per-node permissions `mms
// nats-config` writes let a node write only its own key, and readers take
// the identity from the key, not from the document.
//
// A byte of the identity stays as it is when it is an ASCII letter or
// digit, '-', '/' or '_', or a '.' that is neither the first nor the last
// byte of the key and does not follow another '.' in it. Every other byte
// ('=' itself, blanks, '*', '>', every byte of a non-ASCII character, and
// such dots) becomes '=' and its two upper-case hex digits. So a typical
// host name ("web1.example.net") is its own key and `nats kv get
// MACHINES_STATUS web1.example.net` works; "web 1" is "web=201", "a..b"
// "a.=2Eb", "é" "=C3=A9". The empty identity has no key ("").
func Key(identity string) string {
	if !needsEscape(identity) {
		return identity
	}
	var b strings.Builder
	b.Grow(len(identity) + 8)
	prevDot := true // a '.' at the start is as bad as one after a '.'
	for i := 0; i < len(identity); i++ {
		c := identity[i]
		switch {
		case c == '.' && !prevDot && i < len(identity)-1:
			b.WriteByte('.')
			prevDot = true
			continue
		case c != '.' && c != keyEscape && kvname.KeyByte(c):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%c%02X", keyEscape, c)
		}
		prevDot = false
	}
	return b.String()
}

// needsEscape reports whether identity is not its own key.
func needsEscape(identity string) bool {
	return kvname.Key(identity) != nil || strings.IndexByte(identity, keyEscape) >= 0
}

// ErrNotStatusKey is wrapped by [IdentityOf]'s error for a key that is not
// [Key] of any identity.
var ErrNotStatusKey = errors.New("not the status key of any identity")

// IdentityOf returns the identity whose status key is key: the inverse of
// [Key]. A key that Key never returns (an escape of a byte that needs
// none, lower-case hex digits, an identity longer than [MaxIdentity]) is
// an error wrapping [ErrNotStatusKey].
func IdentityOf(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("status key %q: %w", key, ErrNotStatusKey)
	}
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c != keyEscape {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(key) {
			return "", fmt.Errorf("status key %q: %w: an escape at byte %d lacks two hex digits", key, ErrNotStatusKey, i)
		}
		hi, lo := unhex(key[i+1]), unhex(key[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("status key %q: %w: %q is not two upper-case hex digits", key, ErrNotStatusKey, key[i+1:i+3])
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	identity := b.String()
	if len(identity) > MaxIdentity {
		return "", fmt.Errorf("status key %q: %w: the identity would be %d bytes, more than %d", key, ErrNotStatusKey, len(identity), MaxIdentity)
	}
	if Key(identity) != key {
		return "", fmt.Errorf("status key %q: %w: identity %q has the key %q", key, ErrNotStatusKey, identity, Key(identity))
	}
	return identity, nil
}

// unhex is the value of an upper-case hex digit, -1 for anything else.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// CheckIdentity returns why identity cannot be an agent's identity: empty,
// or longer than [MaxIdentity] bytes.
func CheckIdentity(identity string) error {
	switch {
	case identity == "":
		return errors.New("identity is empty")
	case len(identity) > MaxIdentity:
		return fmt.Errorf("identity is %d bytes, more than the %d allowed", len(identity), MaxIdentity)
	}
	return nil
}
