package packer

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/spec"
)

// TestOpenSerialCeilingAndReset follows a node through the lockout of
// issue 18.1 and out of it: a serial above the ceiling is refused; a node
// whose ledger already holds 2^64-1 (written by an agent without the
// ceiling) ignores normal specs, ignores a reset spec issued before the
// lockout, accepts a fresh reset spec, and afterwards refuses both the bad
// spec and a replay of the reset spec. A healthy node treats a reset spec
// as any other.
func TestOpenSerialCeilingAndReset(t *testing.T) {
	pubA, privA := envTestKey("a")
	path := filepath.Join(t.TempDir(), "ledger.json")
	now := envTestNow
	ceiling := uint64(now.Unix()) + uint64(spec.MaxSerialAhead/time.Second)
	seal := func(serial uint64, issued time.Time, reset bool, name string) []byte {
		return envTestSeal(t, FormatV2, &spec.Spec{
			Serial: serial, IssuedAt: issued, ResetHistory: reset,
			Machines: []spec.Machine{{Name: name, Source: "https://x/" + name + ".tgz"}},
		}, privA)
	}
	open := func(data []byte, at time.Time) (*Opened, error) {
		return Open(data, OpenOptions{Trusted: []ed25519.PublicKey{pubA}, Ledger: NewFileLedger(path), Now: envTestNowFunc(at)})
	}
	wantRefused := func(t *testing.T, data []byte, at time.Time, kind error, msg string) {
		t.Helper()
		before, _ := os.ReadFile(path)
		got, err := open(data, at)
		if !errors.Is(err, kind) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("Open() = %+v, %v, want %v containing %q", got, err, kind, msg)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Errorf("a refused spec changed the ledger:\nbefore %s\nafter  %s", before, after)
		}
	}
	wantLast := func(t *testing.T, serial uint64) Record {
		t.Helper()
		last, ok, err := NewFileLedger(path).Last()
		if err != nil || !ok || last.Serial != serial {
			t.Fatalf("ledger holds %+v, %v, %v, want serial %d", last, ok, err, serial)
		}
		return last
	}

	t.Run("above the ceiling", func(t *testing.T) {
		wantRefused(t, seal(math.MaxUint64, now, false, "max"), now, ErrSerialAhead,
			"spec refused: serial 18446744073709551615 is above "+itoa(ceiling)+", the current Unix time plus 24h0m0s")
		wantRefused(t, seal(uint64(now.UnixMilli()), now, false, "millis"), now, ErrSerialAhead, "milliseconds instead of seconds?")
		wantRefused(t, seal(ceiling+1, now, false, "one-over"), now, ErrSerialAhead, "serial "+itoa(ceiling+1)+" is above")
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused specs wrote a ledger: %v", err)
		}
	})
	t.Run("at the ceiling", func(t *testing.T) {
		if _, err := open(seal(ceiling, now, false, "edge"), now); err != nil {
			t.Fatalf("Open(serial = ceiling) = %v, want accepted", err)
		}
		wantLast(t, ceiling)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	})

	// An agent without the ceiling accepted 2^64-1 an hour ago.
	bad := seal(math.MaxUint64, now.Add(-time.Hour), false, "bad")
	in, err := Inspect(bad)
	if err != nil {
		t.Fatal(err)
	}
	lockedAt := now.Add(-time.Hour)
	if err := NewFileLedger(path).Accept(Record{Serial: math.MaxUint64, Digest: in.Digest, Format: FormatV2, Envelope: bad, AcceptedAt: lockedAt}); err != nil {
		t.Fatal(err)
	}

	t.Run("locked node ignores a normal spec", func(t *testing.T) {
		wantRefused(t, seal(uint64(now.Unix()), now, false, "normal"), now, ErrReplayed, "ignored older spec (serial "+itoa(uint64(now.Unix()))+" < 18446744073709551615)")
	})
	t.Run("the bad spec itself is unchanged, not refused", func(t *testing.T) {
		got, err := open(bad, now)
		if err != nil || !got.Unchanged {
			t.Fatalf("Open(the accepted bad spec) = %+v, %v, want unchanged", got, err)
		}
	})
	t.Run("reset spec issued before the lockout", func(t *testing.T) {
		old := seal(uint64(lockedAt.Unix())-3600, lockedAt.Add(-time.Hour), true, "old-reset")
		wantRefused(t, old, now, ErrReplayed, "it is a reset spec, but a reset only replaces a last serial above the current ceiling")
	})

	reset := seal(uint64(now.Unix()), now, true, "reset")
	t.Run("fresh reset spec", func(t *testing.T) {
		got, err := open(reset, now)
		if err != nil {
			t.Fatalf("Open(reset spec) = %v", err)
		}
		want := HistoryReset{FromSerial: math.MaxUint64, FromDigest: in.Digest, Reason: "signed reset spec"}
		if got.Reset == nil || *got.Reset != want {
			t.Errorf("Opened.Reset = %+v, want %+v", got.Reset, want)
		}
		last := wantLast(t, uint64(now.Unix()))
		if last.Reset == nil || *last.Reset != want {
			t.Errorf("ledger record's Reset = %+v, want %+v", last.Reset, want)
		}
	})
	t.Run("the bad spec cannot come back", func(t *testing.T) {
		wantRefused(t, bad, now, ErrSerialAhead, "serial 18446744073709551615 is above")
	})
	newer := seal(uint64(now.Unix())+60, now.Add(time.Minute), false, "newer")
	if _, err := open(newer, now.Add(time.Minute)); err != nil {
		t.Fatalf("Open(newer spec after the reset) = %v", err)
	}
	t.Run("healthy node refuses a replayed reset spec", func(t *testing.T) {
		wantRefused(t, reset, now.Add(time.Minute), ErrReplayed, "it is a reset spec, but a reset only replaces a last serial above the current ceiling")
		wantLast(t, uint64(now.Unix())+60)
	})
	t.Run("healthy node takes a newer reset spec as a normal spec", func(t *testing.T) {
		got, err := open(seal(uint64(now.Unix())+120, now.Add(2*time.Minute), true, "later"), now.Add(2*time.Minute))
		if err != nil || got.Reset != nil {
			t.Fatalf("Open(newer reset spec) = %+v, %v, want accepted without a reset", got, err)
		}
	})
}

func TestFileLedgerReset(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.json")
	l := NewFileLedger(path)
	if _, err := l.Reset(5, envTestNow); !errors.Is(err, ErrResetMismatch) || !strings.Contains(err.Error(), "no spec was accepted yet") {
		t.Fatalf("Reset() of an empty ledger = %v, want %v", err, ErrResetMismatch)
	}
	rec := Record{Serial: 5, Digest: ledgerTestDigestA, Format: FormatV2, AcceptedAt: envTestNow}
	if err := l.Accept(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reset(6, envTestNow); !errors.Is(err, ErrResetMismatch) || err.Error() != "reset spec history: spec history does not hold that serial: the last accepted spec has serial 5, not 6" {
		t.Fatalf("Reset(6) = %v, want a mismatch naming serial 5", err)
	}
	if _, ok, _ := l.Last(); !ok {
		t.Fatal("a refused Reset removed the record")
	}
	got, err := l.Reset(5, envTestNow)
	if err != nil || got.Digest != rec.Digest {
		t.Fatalf("Reset(5) = %+v, %v, want the record", got, err)
	}
	if _, ok, err := l.Last(); ok || err != nil {
		t.Fatalf("Last() after Reset = %v, %v, want no record", ok, err)
	}
	aside := path + ".reset-20260101T001000.000000000Z"
	if _, err := os.Stat(aside); err != nil {
		t.Errorf("the old ledger was not kept aside: %v", err)
	}
	// Reset again with the same serial: a no-op error, not a second reset.
	if _, err := l.Reset(5, envTestNow); !errors.Is(err, ErrResetMismatch) {
		t.Errorf("second Reset(5) = %v, want %v", err, ErrResetMismatch)
	}
	// A v1 spec is now accepted where the v2 history refused it.
	pubA, privA := envTestKey("a")
	v1 := envTestSeal(t, FormatV1, envTestSpecV1(), privA)
	if _, err := Open(v1, OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowV1: true, Ledger: l, Now: envTestNowFunc(envTestNow)}); err != nil {
		t.Errorf("Open(v1) after Reset = %v, want accepted", err)
	}
}

func TestFileLedgerAcceptResetMustMatch(t *testing.T) {
	l := NewFileLedger(filepath.Join(t.TempDir(), "ledger.json"))
	if err := l.Accept(Record{Serial: 9, Digest: ledgerTestDigestA, Format: FormatV2, AcceptedAt: envTestNow}); err != nil {
		t.Fatal(err)
	}
	next := Record{Serial: 3, Digest: ledgerTestDigestB, Format: FormatV2, AcceptedAt: envTestNow,
		Reset: &HistoryReset{FromSerial: 8, FromDigest: ledgerTestDigestA, Reason: "test"}}
	if err := l.Accept(next); err == nil || !strings.Contains(err.Error(), "the reset replaces serial 8, but the ledger holds another record") {
		t.Fatalf("Accept(reset of another record) = %v, want refused", err)
	}
	next.Reset.FromSerial = 9
	if err := l.Accept(next); err != nil {
		t.Fatalf("Accept(reset of the record) = %v", err)
	}
}

// itoa formats a serial.
func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
