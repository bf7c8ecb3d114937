package manager

import (
	"slices"
	"testing"
)

// Every rejection kind has an outcome word, and only an accepted spec is
// "applied"; a kind this version does not know reads as an error.
func TestRejectionOutcome(t *testing.T) {
	want := map[Rejection]string{
		"":                   SeenApplied,
		RejectReplayed:       SeenIgnoredOlder,
		RejectEquivocation:   SeenEquivocation,
		RejectUnsigned:       SeenUntrusted,
		RejectBadSignature:   SeenUntrusted,
		RejectUnknownKey:     SeenUntrusted,
		RejectBelowThreshold: SeenUntrusted,
		RejectExpired:        SeenExpired,
		RejectNotYetValid:    SeenNotYetValid,
		RejectSerialAhead:    SeenSerialAhead,
		RejectMalformed:      SeenMalformed,
		RejectInvalid:        SeenInvalid,
		RejectLegacy:         SeenLegacyRefused,
		RejectMissing:        SeenMissing,
		RejectError:          SeenError,
		"from_a_newer_agent": SeenError,
	}
	for kind, w := range want {
		if got := kind.Outcome("v2"); got != w {
			t.Errorf("Rejection(%q).Outcome(v2) = %q, want %q", kind, got, w)
		}
	}
	if got := RejectReplayed.Outcome("v1"); got != SeenLegacyRefused {
		t.Errorf("RejectReplayed.Outcome(v1) = %q, want %q", got, SeenLegacyRefused)
	}
}

// The table holds each kind once, and the help text's list holds every
// word of a spec not applied, each once.
func TestRejectionTable(t *testing.T) {
	seen := map[Rejection]bool{}
	for _, row := range rejections {
		if seen[row.kind] {
			t.Errorf("rejection %q is in the table twice", row.kind)
		}
		seen[row.kind] = true
	}
	got := RejectionOutcomes()
	want := []string{SeenIgnoredOlder, SeenEquivocation, SeenExpired, SeenNotYetValid, SeenSerialAhead, SeenUntrusted,
		SeenLegacyRefused, SeenMalformed, SeenInvalid, SeenMissing, SeenError}
	if !slices.Equal(got, want) {
		t.Errorf("RejectionOutcomes() = %q, want %q", got, want)
	}
}
