// Package kvname holds the rules NATS JetStream applies to the names of
// Key-Value and object store buckets and to KV keys, in one place: the kv
// watcher, `mms agent --bucket/--key`, the status keys and spec sources all
// check names with it, so they cannot disagree.
package kvname

import (
	"errors"
	"strings"
)

// ErrBucket and ErrKey are wrapped by the errors of [Bucket] and [Key].
var (
	ErrBucket = errors.New("want letters, digits, _ or -")
	ErrKey    = errors.New("want letters, digits and -/_=, in tokens separated by single dots (no wildcards, no empty tokens)")
)

// Bucket returns nil if name is a valid bucket name (KV or object store):
// one or more ASCII letters, digits, '_' or '-'.
func Bucket(name string) error {
	if name == "" || strings.IndexFunc(name, func(r rune) bool {
		return r >= 0x80 || !(KeyByte(byte(r)) && r != '/' && r != '=')
	}) >= 0 {
		return ErrBucket
	}
	return nil
}

// Key returns nil if key is a valid KV key to put or get: tokens of
// [KeyByte] characters separated by single dots, not starting or ending
// with a dot (as a NATS subject it may hold no empty token, and no '*' or
// '>' wildcard).
func Key(key string) error {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return ErrKey
	}
	for i := range len(key) {
		if c := key[i]; c != '.' && !KeyByte(c) {
			return ErrKey
		}
	}
	return nil
}

// KeyByte reports whether c may appear in a KV key token: an ASCII letter
// or digit, '-', '/', '_' or '='.
func KeyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '/' || c == '_' || c == '='
}
