package spec

import (
	"errors"
	"fmt"
	"strings"
)

// NamePattern is the regular expression every machine name matches. v2
// credential names ([Machine.Auth]) follow it too. A name that matches may
// still be reserved; [ValidName] checks both.
const NamePattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

// GovernorPattern is the regular expression a governor name matches. A
// governor name becomes part of a JetStream stream name and a NATS subject,
// so it has no dots, spaces or wildcards.
const GovernorPattern = `^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`

// Names a machine directory loader skips or owns, so no managed machine may
// use them: a machine installed under one of them would never start, or would
// collide with the manager's own bookkeeping.
const (
	// reservedName is the loader's scratch directory.
	reservedName = "tmp"
	// reservedPrefix marks Choria's generated manager machines (mm_<name>).
	reservedPrefix = "mm_"
	// reservedSuffix marks directories the loader skips as temporary.
	reservedSuffix = "-temp"
)

// ValidName returns nil if name may name a managed machine: it matches
// [NamePattern] and is not reserved. Reserved are "tmp" and names ending in
// "-temp" (the machine loader skips them) and names starting with "mm_"
// (Choria's generated manager machines). Dot-names, which loaders also skip,
// never match the pattern. Machine loaders must skip exactly these names and
// dot-names.
func ValidName(name string) error {
	if err := checkName("name", name); err != nil {
		return err
	}
	switch {
	case name == reservedName:
		return fmt.Errorf("%s is reserved: the machine loader skips it", quote(name))
	case strings.HasPrefix(name, reservedPrefix):
		return fmt.Errorf("%s is reserved: the %s prefix belongs to generated manager machines", quote(name), reservedPrefix)
	case strings.HasSuffix(name, reservedSuffix):
		return fmt.Errorf("%s is reserved: the machine loader skips names ending in %s", quote(name), reservedSuffix)
	}
	return nil
}

// checkName reports whether name matches NamePattern; noun says what kind
// of name it is ("name", "credential name").
func checkName(noun, name string) error {
	if !matchName(name, false) {
		return fmt.Errorf("invalid %s %s: want 1 to 63 lowercase letters, digits, _ or -, starting with a letter or digit", noun, quote(name))
	}
	return nil
}

// checkGovernor reports whether name matches GovernorPattern.
func checkGovernor(name string) error {
	if !matchName(name, true) {
		return fmt.Errorf("invalid governor name %s: want 1 to 63 letters, digits, _ or -, starting with a letter or digit", quote(name))
	}
	return nil
}

// matchName implements NamePattern (upper false) and GovernorPattern (upper
// true) without a regexp.
func matchName(s string, upper bool) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case upper && 'A' <= c && c <= 'Z':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// errRequired is the cause of a missing required field.
var errRequired = errors.New("required")

// checkSHA256 reports whether s is a lowercase hex sha256.
func checkSHA256(s string) error {
	if s == "" {
		return errRequired
	}
	if len(s) != 64 || strings.IndexFunc(s, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
	}) >= 0 {
		return fmt.Errorf("want 64 lowercase hex characters, got %s", quote(s))
	}
	return nil
}

// checkBucket reports whether s is a valid JetStream object store bucket
// name (the rule nats.go applies).
func checkBucket(s string) error {
	if s == "" || strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-')
	}) >= 0 {
		return fmt.Errorf("invalid object store bucket %s: want letters, digits, _ or -", quote(s))
	}
	return nil
}
