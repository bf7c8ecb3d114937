package spec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mms-io/mms/internal/kvname"
)

// MaxNameLength is the longest machine name, in bytes. Choria sets no
// limit; this one leaves room under the 255-byte file name limit of every
// common file system for the installer's temporaries (".stage-<name>-…").
const MaxNameLength = 200

// NamePattern is the regular expression every machine name matches; the
// package applies it without a regexp, plus the rules a pattern cannot say
// (see [CheckName]). It is also the rule for the names of node-local
// credentials ([Machine.Auth]) and of compiled-in machines, and for the
// directories the agent loads machines from.
const NamePattern = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$`

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

// windowsDevices are names Windows resolves to devices in every directory,
// with or without an extension ("nul.txt" is the null device too).
var windowsDevices = []string{"con", "prn", "aux", "nul",
	"com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9",
	"lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9"}

// CheckName returns nil if name is a well-formed machine name: what
// Choria's schema accepts (letters of both cases, digits, '_' and '-'),
// plus a leading digit and '.' inside a name, as long as the name is safe
// as a directory name on every platform: at most [MaxNameLength] bytes,
// ASCII only, not starting with '.', '_' or '-', not ending with '.', no
// "..", and not a Windows device name (con, nul, com1, …, with or without
// an extension). Names that differ only in case are the same machine on
// case-insensitive file systems; [ValidateMachines] refuses such pairs.
//
// CheckName does not look at reserved names; [ValidName] does.
func CheckName(name string) error {
	return checkName("name", name)
}

// ValidName returns nil if name may name a managed machine: it passes
// [CheckName] and is not reserved. Reserved are "tmp" and names ending in
// "-temp" (the machine loader skips them) and names starting with "mm_"
// (Choria's generated manager machines). Dot-names, which loaders also
// skip, are not well-formed. Machine loaders must skip exactly these names
// and dot-names.
func ValidName(name string) error {
	if err := CheckName(name); err != nil {
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

// CheckCredentialName returns nil if name may name a node-local credential
// ([Machine.Auth]): the machine-name rule of [CheckName], as it names a file.
func CheckCredentialName(name string) error {
	return checkName("credential name", name)
}

// checkName applies the machine-name rule; noun says what kind of name it
// is ("name", "credential name").
func checkName(noun, name string) error {
	if reason := nameProblem(name); reason != "" {
		return fmt.Errorf("invalid %s %s: %s", noun, quote(name), reason)
	}
	return nil
}

// nameRule is the machine-name rule in words, for error messages.
const nameRule = "want 1 to 200 letters, digits, _, - or ., starting with a letter or digit"

// nameProblem says why name breaks the machine-name rule, or "".
func nameProblem(name string) string {
	if !matchName(name, true, true, MaxNameLength) {
		return nameRule
	}
	switch base := strings.ToLower(name); {
	case strings.Contains(name, ".."):
		return "\"..\" is not allowed in a name"
	case strings.HasSuffix(name, "."):
		return "a name may not end with \".\" (Windows drops it)"
	default:
		if i := strings.IndexByte(base, '.'); i >= 0 {
			base = base[:i]
		}
		for _, d := range windowsDevices {
			if base == d {
				return fmt.Sprintf("%q is a device name on Windows", d)
			}
		}
	}
	return ""
}

// checkGovernor reports whether name matches GovernorPattern.
func checkGovernor(name string) error {
	if !matchName(name, true, false, 63) {
		return fmt.Errorf("invalid governor name %s: want 1 to 63 letters, digits, _ or -, starting with a letter or digit", quote(name))
	}
	return nil
}

// matchName reports whether s is 1 to limit ASCII letters (lowercase only
// unless upper), digits, '_', '-' and (if dots) '.', starting with a letter
// or digit: [NamePattern] and [GovernorPattern] without a regexp.
func matchName(s string, upper, dots bool, limit int) bool {
	if len(s) == 0 || len(s) > limit {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case upper && 'A' <= c && c <= 'Z':
		case (c == '_' || c == '-') && i > 0:
		case dots && c == '.' && i > 0:
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
	if len(s) != 64 || !lowerHex(s) {
		return fmt.Errorf("want 64 lowercase hex characters, got %s", quote(s))
	}
	return nil
}

// lowerHex reports whether s is only lowercase hex digits (a byte loop: a
// large spec has two checksums per entry).
func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkBucket reports whether s is a valid JetStream object store bucket
// name.
func checkBucket(s string) error {
	if err := kvname.Bucket(s); err != nil {
		return fmt.Errorf("invalid object store bucket %s: %w", quote(s), err)
	}
	return nil
}
