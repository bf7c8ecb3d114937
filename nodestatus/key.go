package nodestatus

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/mms-io/mms/internal/kvname"
)

// maxKeyBase caps the identity part of a key; longer identities are cut and
// get the hash suffix.
const maxKeyBase = 200

// Key returns the KV key of the status document of the agent with this
// identity.
//
// KV keys allow only [-/_=.a-zA-Z0-9], may not start or end with '.', and
// (as NATS subject tokens) may not hold an empty token (".."). An identity
// that is already such a key (a typical host name, "web1.example.net") is
// its own key, so `nats kv get MACHINES_STATUS web1.example.net` works. Any
// other identity has each offending character (a whole UTF-8 sequence, or
// one invalid byte) replaced by '_', is cut to 200 bytes, and gets "-" and
// the first 8 hex digits of the sha256 of the identity appended, so
// identities that map to the same characters still get different keys
// ("web 1" → "web_1-<hash>", while "web_1" stays "web_1"). The document
// itself carries the real identity.
func Key(identity string) string {
	var b strings.Builder
	mapped := false
	prevDot := true // a '.' at the start is as bad as one after a '.'
	for _, r := range identity {
		switch {
		case r == '.' && !prevDot:
			b.WriteByte('.')
			prevDot = true
			continue
		case r < 0x80 && r != '.' && kvname.KeyByte(byte(r)):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
			mapped = true
		}
		prevDot = false
	}
	base := b.String()
	if len(base) > maxKeyBase {
		base = base[:maxKeyBase]
		mapped = true
	}
	if trimmed, ok := strings.CutSuffix(base, "."); ok {
		base = trimmed + "_"
		mapped = true
	}
	if base == "" {
		base = "_"
		mapped = true
	}
	if !mapped {
		return base
	}
	sum := sha256.Sum256([]byte(identity))
	return base + "-" + hex.EncodeToString(sum[:4])
}
