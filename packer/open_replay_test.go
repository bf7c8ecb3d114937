package packer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mms-io/mms/spec"
)

// TestOpenReplayRules drives one FileLedger through a sequence of specs, as a
// node would see them, and checks each outcome and what the ledger holds.
func TestOpenReplayRules(t *testing.T) {
	pubA, privA := envTestKey("a")
	path := filepath.Join(t.TempDir(), "ledger.json")
	at := func(d time.Duration) time.Time { return envTestIssued.Add(d) }
	v2 := func(serial uint64, issued, expires time.Time, name string) []byte {
		return envTestSeal(t, FormatV2, &spec.Spec{
			Serial: serial, IssuedAt: issued, Expires: expires,
			Machines: []spec.Machine{{Name: name, Source: "https://x/" + name + ".tgz"}},
		}, privA)
	}
	v1 := func(name string) []byte {
		return envTestSeal(t, FormatV1, &spec.Spec{Machines: []spec.Machine{{Name: name, Source: "https://x/" + name + ".tgz", Password: "p"}}}, privA)
	}
	s5 := v2(5, at(0), at(2*time.Hour), "five")
	s7 := v2(7, at(time.Hour), time.Time{}, "seven")
	s9 := v2(9, at(3*time.Hour), at(4*time.Hour), "nine")
	v1a, v1b := v1("alpha"), v1("beta")

	steps := []struct {
		name          string
		data          []byte
		now           time.Time
		wantKind      error
		wantMsg       string
		wantUnchanged bool
		wantStale     bool
		wantLast      uint64 // serial the ledger holds afterwards
		wantDigestOf  []byte // envelope whose payload the ledger holds afterwards
	}{
		{name: "first v1 accepted", data: v1a, now: at(0), wantLast: 0, wantDigestOf: v1a},
		{name: "v1 after v1 accepted (no replay protection)", data: v1b, now: at(0), wantLast: 0, wantDigestOf: v1b},
		{name: "same v1 is unchanged", data: v1b, now: at(0), wantUnchanged: true, wantLast: 0, wantDigestOf: v1b},
		{name: "older v1 again accepted (no replay protection)", data: v1a, now: at(0), wantLast: 0, wantDigestOf: v1a},
		{name: "v2 after v1 accepted", data: s5, now: at(time.Minute), wantLast: 5, wantDigestOf: s5},
		{name: "v1 after v2 replayed", data: v1a, now: at(time.Minute), wantKind: ErrReplayed,
			wantMsg: "ignored older spec (serial 0 < 5; v1 specs have no serial)", wantLast: 5, wantDigestOf: s5},
		{name: "same serial same bytes unchanged", data: s5, now: at(time.Hour), wantUnchanged: true, wantLast: 5, wantDigestOf: s5},
		{name: "same serial other bytes is equivocation", data: v2(5, at(0), at(2*time.Hour), "other"), now: at(time.Hour),
			wantKind: ErrEquivocation, wantMsg: "serial 5 reused with different content", wantLast: 5, wantDigestOf: s5},
		{name: "current spec expired is stale, not an error", data: s5, now: at(3 * time.Hour), wantUnchanged: true, wantStale: true, wantLast: 5, wantDigestOf: s5},
		{name: "new spec already expired", data: v2(6, at(time.Hour), at(2*time.Hour), "six"), now: at(3 * time.Hour),
			wantKind: ErrExpired, wantMsg: "spec expired 1h0m0s ago", wantLast: 5, wantDigestOf: s5},
		{name: "new spec from the future", data: s9, now: at(time.Hour),
			wantKind: ErrNotYetValid, wantMsg: "spec not valid yet (issued 2h0m0s in the future, allowed clock skew 5m0s)", wantLast: 5, wantDigestOf: s5},
		{name: "newer serial accepted", data: s7, now: at(3 * time.Hour), wantLast: 7, wantDigestOf: s7},
		{name: "older serial replayed", data: s5, now: at(3 * time.Hour), wantKind: ErrReplayed,
			wantMsg: "ignored older spec (serial 5 < 7)", wantLast: 7, wantDigestOf: s7},
		{name: "older expired serial is replayed, not expired", data: v2(6, at(time.Hour), at(2*time.Hour), "six"), now: at(3 * time.Hour),
			wantKind: ErrReplayed, wantMsg: "ignored older spec (serial 6 < 7)", wantLast: 7, wantDigestOf: s7},
		{name: "forged spec leaves the ledger alone", data: envTestSeal(t, FormatV2, envTestSpec(), envTestPriv("mallory")), now: at(3 * time.Hour),
			wantKind: ErrUnknownKey, wantMsg: "spec rejected: 0/1 valid signatures (keyid " + KeyID(envTestPriv("mallory").Public().(ed25519.PublicKey)) + " not trusted)",
			wantLast: 7, wantDigestOf: s7},
		{name: "spec from the future becomes valid", data: s9, now: at(3 * time.Hour), wantLast: 9, wantDigestOf: s9},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, _ := os.ReadFile(path)
			// A fresh FileLedger for every step: the state lives on disk only.
			opts := OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowV1: true, Ledger: NewFileLedger(path), Now: envTestNowFunc(st.now)}
			got, err := Open(st.data, opts)
			if st.wantKind != nil {
				if !errors.Is(err, st.wantKind) || err.Error() != st.wantMsg {
					t.Fatalf("Open() = %+v, %v, want error %q (%v)", got, err, st.wantMsg, st.wantKind)
				}
			} else {
				if err != nil {
					t.Fatalf("Open() error = %v", err)
				}
				if got.Unchanged != st.wantUnchanged || got.Stale != st.wantStale {
					t.Errorf("Open() Unchanged, Stale = %v, %v, want %v, %v", got.Unchanged, got.Stale, st.wantUnchanged, st.wantStale)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if (st.wantKind != nil || st.wantUnchanged) && !bytes.Equal(before, after) {
				t.Errorf("ledger file changed on a rejected or unchanged spec:\nbefore %s\nafter  %s", before, after)
			}
			last, ok, err := NewFileLedger(path).Last()
			if err != nil || !ok {
				t.Fatalf("Last() = %+v, %v, %v, want a record", last, ok, err)
			}
			in, err := Inspect(st.wantDigestOf)
			if err != nil {
				t.Fatal(err)
			}
			if last.Serial != st.wantLast || last.Digest != in.Digest {
				t.Errorf("ledger holds serial %d digest %s, want serial %d digest %s", last.Serial, last.Digest, st.wantLast, in.Digest)
			}
			switch in.Format {
			case FormatV1:
				if last.Envelope != nil {
					t.Errorf("ledger holds a v1 envelope (%d bytes), want none: v1 may carry credentials", len(last.Envelope))
				}
				if bytes.Contains(after, []byte(`"p"`)) {
					t.Errorf("ledger file contains the v1 password: %s", after)
				}
			case FormatV2:
				if !bytes.Equal(last.Envelope, st.wantDigestOf) {
					t.Errorf("ledger envelope = %s, want %s", last.Envelope, st.wantDigestOf)
				}
			}
		})
	}
}

// envTestPriv returns the private key envTestKey derives from label.
func envTestPriv(label string) ed25519.PrivateKey {
	_, priv := envTestKey(label)
	return priv
}

func TestOpenRecordsBeforeReturning(t *testing.T) {
	pubA, privA := envTestKey("a")
	path := filepath.Join(t.TempDir(), "ledger.json")
	data := envTestSeal(t, FormatV2, envTestSpec(), privA)
	now := envTestNow
	got, err := Open(append(bytes.Clone(data), '\n'), OpenOptions{Trusted: []ed25519.PublicKey{pubA}, Ledger: NewFileLedger(path), Now: envTestNowFunc(now)})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	last, ok, err := NewFileLedger(path).Last()
	if err != nil || !ok {
		t.Fatalf("Last() = %v, %v, want a record", ok, err)
	}
	payload := envTestB64(t, envTestEditJSONField(t, data, "payload"))
	sum := sha256.Sum256(payload)
	want := Record{Serial: envTestSpec().Serial, Digest: hex.EncodeToString(sum[:]), Format: FormatV2, Envelope: data, AcceptedAt: now}
	if last.Serial != want.Serial || last.Digest != want.Digest || last.Format != want.Format ||
		!bytes.Equal(last.Envelope, want.Envelope) || !last.AcceptedAt.Equal(want.AcceptedAt) {
		t.Errorf("Last() = %+v, want %+v", last, want)
	}
	if got.Digest != want.Digest {
		t.Errorf("Open().Digest = %s, want %s", got.Digest, want.Digest)
	}
}

// envTestEditJSONField returns one string field of an envelope.
func envTestEditJSONField(t testing.TB, data []byte, field string) string {
	t.Helper()
	var v string
	envTestEditJSON(t, data, func(m map[string]any) { v = m[field].(string) })
	return v
}

func TestOpenWithCorruptLedger(t *testing.T) {
	pubA, privA := envTestKey("a")
	path := filepath.Join(t.TempDir(), "ledger.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(envTestSeal(t, FormatV2, envTestSpec(), privA), OpenOptions{Trusted: []ed25519.PublicKey{pubA}, Ledger: NewFileLedger(path), Now: envTestNowFunc(envTestNow)})
	if !errors.Is(err, ErrCorruptLedger) {
		t.Fatalf("Open() with a corrupt ledger error = %v, want %v", err, ErrCorruptLedger)
	}
	if got, _ := os.ReadFile(path); string(got) != "{not json" {
		t.Errorf("corrupt ledger was rewritten to %q, want it left alone", got)
	}
}
