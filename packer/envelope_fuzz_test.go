package packer

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// envFuzzSigned is a payload that a seed genuinely signed: its format and digest.
type envFuzzSigned struct {
	format Format
	digest string
}

// envFuzzSeeds returns the seed envelopes: every table-test rejection, the
// golden envelopes, round-trip envelopes and the Choria vectors.
func envFuzzSeeds(f *testing.F) [][]byte {
	_, privA := envTestKey("a")
	_, privB := envTestKey("b")
	seeds := [][]byte{
		envTestSeal(f, FormatV2, envTestSpec(), privA),
		envTestSeal(f, FormatV2, envTestSpec(), privA, privB),
		envTestSeal(f, FormatV2, envTestSpec(), privB),
		envTestSeal(f, FormatV2, envTestSpec()),
		envTestSealCompressed(f, envTestSpec(), privA),
		envTestSealCompressed(f, envTestSpec(), privA, privB),
		envTestSignV2Type(f, PayloadTypeZstd, zstdBomb(f, 1<<10), privA),
		envTestSeal(f, FormatV1, envTestSpecV1(), privA),
		envTestSeal(f, FormatV1, envTestSpecV1()),
		[]byte(choriaReadmeSpec),
		choriaPack(f, []byte(choriaReadmeMachines), privA),
		choriaPack(f, []byte("[]"), privA),
	}
	for _, name := range []string{"seal-v1.golden.json", "seal-v2.golden.json", "seal-v2-unsigned.golden.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	for _, tt := range openRejectCases(f) {
		if len(tt.data) <= 64<<10 { // a 1 MiB seed would only slow the fuzzer down
			seeds = append(seeds, tt.data)
		}
	}
	return seeds
}

// envFuzzSignedBy returns the payloads some seed carries a valid signature for
// by key, decided with ed25519.Verify over the seed's signed message.
func envFuzzSignedBy(f *testing.F, seeds [][]byte, pub ed25519.PublicKey) map[envFuzzSigned]bool {
	signed := make(map[envFuzzSigned]bool)
	for _, seed := range seeds {
		sealed, err := decodeEnvelope(seed)
		if err != nil {
			continue
		}
		if sealed.compressed {
			_, _ = decodePayload(sealed) // the digest is the decompressed payload's
		}
		for _, sg := range sealed.sigs {
			if (sg.keyID == "" || sg.keyID == KeyID(pub)) && ed25519.Verify(pub, sealed.message, sg.sig) {
				signed[envFuzzSigned{sealed.format, sealed.digest()}] = true
			}
		}
	}
	if len(signed) == 0 {
		f.Fatalf("no seed is signed by keyid %s", KeyID(pub))
	}
	return signed
}

// envFuzzLedger is an in-memory Ledger for the fuzzer, where a FileLedger's
// fsyncs would slow every run down.
type envFuzzLedger struct {
	last Record
	ok   bool
}

var _ Ledger = (*envFuzzLedger)(nil)

func (m *envFuzzLedger) Last() (Record, bool, error) { return m.last, m.ok, nil }

func (m *envFuzzLedger) Accept(r Record) error {
	m.last, m.ok = r, true
	return nil
}

// FuzzOpen feeds arbitrary bytes to Open and Inspect. Neither may panic, and
// Open must never accept an envelope unless its payload is one the trusted
// key(s) genuinely signed in a seed: the fuzzer holds no private key, so any
// other success is a forgery Open let through.
func FuzzOpen(f *testing.F) {
	pubA, _ := envTestKey("a")
	pubB, _ := envTestKey("b")
	seeds := envFuzzSeeds(f)
	signedByA := envFuzzSignedBy(f, seeds, pubA)
	signedByB := envFuzzSignedBy(f, seeds, pubB)
	for _, s := range seeds {
		f.Add(s)
	}
	now := envTestNowFunc(envTestNow)

	f.Fuzz(func(t *testing.T, data []byte) {
		inspected, inspectErr := Inspect(data)

		one, err := Open(data, OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowV1: true, Now: now})
		if err == nil {
			if !signedByA[envFuzzSigned{one.Format, one.Digest}] {
				t.Fatalf("Open(trust {A}) accepted a %s payload (digest %s) that A never signed", one.Format, one.Digest)
			}
			if !slices.Equal(one.KeyIDs, []string{KeyID(pubA)}) || one.Spec == nil {
				t.Fatalf("Open(trust {A}) = keyids %v, spec %v, want [%s] and a spec", one.KeyIDs, one.Spec, KeyID(pubA))
			}
			if inspectErr != nil || inspected.Digest != one.Digest || inspected.Format != one.Format {
				t.Fatalf("Inspect() = %+v, %v, disagrees with Open() = %+v", inspected, inspectErr, one)
			}
		}

		two, err := Open(data, OpenOptions{Trusted: []ed25519.PublicKey{pubB, pubA}, Threshold: 2, AllowV1: true, Now: now})
		if err == nil {
			key := envFuzzSigned{two.Format, two.Digest}
			if !signedByA[key] || !signedByB[key] {
				t.Fatalf("Open(trust {A, B}, threshold 2) accepted a %s payload (digest %s) not signed by both", two.Format, two.Digest)
			}
			if len(two.KeyIDs) != 2 {
				t.Fatalf("Open(threshold 2).KeyIDs = %v, want two ids", two.KeyIDs)
			}
		}

		// Insecure mode reaches the payload decoder and the replay rules for
		// every input; they must hold together.
		ledger := &envFuzzLedger{last: Record{Serial: envTestSpec().Serial, Digest: "00", Format: FormatV2}, ok: true}
		prev := ledger.last
		got, err := Open(data, OpenOptions{AllowUnsigned: true, AllowV1: true, Ledger: ledger, Now: now})
		if err != nil {
			if ledger.last.Digest != prev.Digest {
				t.Fatalf("Open() failed with %v but changed the ledger to %+v", err, ledger.last)
			}
			return
		}
		if got.Spec.Serial < prev.Serial {
			t.Fatalf("Open() accepted serial %d below the ledger's %d", got.Spec.Serial, prev.Serial)
		}
		if got.Spec.Serial == prev.Serial && !got.Unchanged {
			t.Fatalf("Open() accepted reused serial %d with digest %s", got.Spec.Serial, got.Digest)
		}
		if ledger.last.Digest != got.Digest || ledger.last.Serial != got.Spec.Serial {
			t.Fatalf("Open() accepted %s serial %d but the ledger holds %+v", got.Digest, got.Spec.Serial, ledger.last)
		}
		if inspectErr != nil || inspected.Digest != got.Digest {
			t.Fatalf("Inspect() = %+v, %v, disagrees with Open() = %+v", inspected, inspectErr, got)
		}
	})
}

// FuzzDecodeV2EnvelopeFast checks that the one-pass envelope decoder
// agrees with the full one: whatever it accepts, detectFormat and
// decodeV2Envelope accept too, with the same payload, signed message and
// signatures.
func FuzzDecodeV2EnvelopeFast(f *testing.F) {
	for _, s := range envFuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, err := decodeV2EnvelopeFast(data)
		if err != nil {
			return
		}
		if format, err := detectFormat(data); err != nil || format != FormatV2 {
			t.Fatalf("the fast decoder accepted %q; detectFormat says %v, %v", data, format, err)
		}
		full, err := decodeV2Envelope(data)
		if err != nil {
			t.Fatalf("the fast decoder accepted %q; the full one refused it: %v", data, err)
		}
		if !bytes.Equal(fast.payload, full.payload) || !bytes.Equal(fast.message, full.message) || fast.compressed != full.compressed ||
			!slices.EqualFunc(fast.sigs, full.sigs, func(a, b envelopeSig) bool { return a.keyID == b.keyID && bytes.Equal(a.sig, b.sig) }) {
			t.Fatalf("decoding %q: fast %+v, full %+v", data, fast, full)
		}
	})
}

// TestDecodeV2EnvelopeFastTakesSealed: what Seal writes (plain, compressed,
// several signatures, none) is decoded by the fast decoder.
func TestDecodeV2EnvelopeFastTakesSealed(t *testing.T) {
	_, privA := envTestKey("a")
	_, privB := envTestKey("b")
	for i, env := range [][]byte{
		envTestSeal(t, FormatV2, envTestSpec(), privA),
		envTestSeal(t, FormatV2, envTestSpec(), privA, privB),
		envTestSeal(t, FormatV2, envTestSpec()),
		envTestSealCompressed(t, envTestSpec(), privA),
	} {
		if _, err := decodeV2EnvelopeFast(env); err != nil {
			t.Errorf("envelope %d: the fast decoder left it: %v", i, err)
		}
	}
}
