package packer

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/spec"
)

// largeSpec is a spec of n entries, each with its own archive and matcher
// (like mms bench's spec rows).
func largeSpec(n int) *spec.Spec {
	ms := make([]spec.Machine, n)
	for i := range ms {
		name := fmt.Sprintf("m%05d", i)
		sum := sha256.Sum256([]byte(name))
		sums := sha256.Sum256([]byte(name + "/SHA256SUMS"))
		ms[i] = spec.Machine{Name: name, Source: "nats://ARCHIVES/" + name + ".tar.gz",
			Checksum: hex.EncodeToString(sum[:]), VerifyChecksum: hex.EncodeToString(sums[:]),
			Match: fmt.Sprintf(`identity('^edge-%05d[.]')`, i)}
	}
	return &spec.Spec{Serial: 7, IssuedAt: envTestNow.Add(-time.Hour), Machines: ms}
}

// TestSealCompressed: Seal keeps a spec that fits plain (every agent reads
// it), and compresses one that does not: a spec of 10,000 entries, 3.5 MB
// plain, fits in one envelope and opens to the same spec, with the digest
// it has plain.
func TestSealCompressed(t *testing.T) {
	pub, priv := envTestKey("a")
	opts := OpenOptions{Trusted: []ed25519.PublicKey{pub}, Now: envTestNowFunc(envTestNow)}

	small := envTestSeal(t, FormatV2, envTestSpec(), priv)
	if !strings.Contains(string(small), `"payloadType":"`+PayloadType+`"`) {
		t.Errorf("a small spec was sealed %s, want plain", small[:80])
	}

	big := largeSpec(10_000)
	plain, err := SealWith(FormatV2, big, SealOptions{Compression: CompressNever}, priv)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) <= MaxEnvelopeSize {
		t.Fatalf("the plain envelope of 10,000 entries is %d bytes: the test needs one above %d", len(plain), MaxEnvelopeSize)
	}
	if _, err := Open(plain, opts); !errors.Is(err, ErrMalformed) {
		t.Errorf("Open(a %d-byte envelope) = %v, want ErrMalformed", len(plain), err)
	}
	env, err := Seal(FormatV2, big, priv)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) > MaxEnvelopeSize || !strings.Contains(string(env[:200]), PayloadTypeZstd) {
		t.Fatalf("Seal(10,000 entries) = %d bytes, %.80s…; want a compressed envelope of at most %d", len(env), env, MaxEnvelopeSize)
	}
	t.Logf("10,000 entries: %d bytes plain, %d compressed", len(plain), len(env))
	got, err := Open(env, opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(big, got.Spec); diff != "" || !got.Compressed || got.Format != FormatV2 {
		t.Errorf("Open(compressed) = format %v compressed %v, spec (-want +got):\n%s", got.Format, got.Compressed, diff)
	}
	sum := sha256.Sum256(mustEncodeV2(t, big))
	if want := hex.EncodeToString(sum[:]); got.Digest != want {
		t.Errorf("digest of the compressed spec %s, want %s: the plain payload's (a spec has one digest)", got.Digest, want)
	}

	// Always and never.
	always, err := SealWith(FormatV2, envTestSpec(), SealOptions{Compression: CompressAlways}, priv)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := Open(always, opts); err != nil || !o.Compressed || cmp.Diff(envTestSpec(), o.Spec) != "" {
		t.Errorf("Open(always compressed) = %+v, %v", o, err)
	}
	// v1 is never compressed: Choria's agents read plain JSON only.
	v1, err := SealWith(FormatV1, envTestSpecV1(), SealOptions{Compression: CompressAlways}, priv)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := Inspect(v1); err != nil || o.Compressed || o.Format != FormatV1 {
		t.Errorf("Inspect(v1 sealed with CompressAlways) = %+v, %v, want a plain v1 envelope", o, err)
	}
}

// TestOpenCompressedRefusals: a compressed payload is checked like any
// other (signatures first, over the compressed bytes) and decompressed
// within MaxPayloadSize: a bomb, invalid data, a frame asking for a
// window above the bound are malformed, and nothing is accepted.
func TestOpenCompressedRefusals(t *testing.T) {
	pub, priv := envTestKey("a")
	_, other := envTestKey("b")
	opts := OpenOptions{Trusted: []ed25519.PublicKey{pub}, Now: envTestNowFunc(envTestNow)}
	good := compressPayload(mustEncodeV2(t, envTestSpec()))
	tests := []struct {
		name    string
		env     []byte
		wantIs  error
		wantMsg string
	}{
		{"a bomb", envTestSignV2Type(t, PayloadTypeZstd, zstdBomb(t, MaxPayloadSize+1), priv), ErrMalformed,
			fmt.Sprintf("the payload decompresses to more than %d bytes", MaxPayloadSize)},
		// A frame whose header asks for a 2 TiB window (window descriptor
		// 0xf8), then one empty raw block.
		{"a huge window", envTestSignV2Type(t, PayloadTypeZstd, []byte("\x28\xb5\x2f\xfd\x00\xf8\x01\x00\x00"), priv), ErrMalformed,
			fmt.Sprintf("asks for a window of more than %d bytes", MaxPayloadSize)},
		{"not zstd", envTestSignV2Type(t, PayloadTypeZstd, []byte(`{"serial":1,"machines":[]}`), priv), ErrMalformed, "decompressing v2 payload: invalid zstd data"},
		{"empty", envTestSignV2Type(t, PayloadTypeZstd, compressPayload(nil), priv), ErrMalformed, "decompresses to nothing"},
		{"signed as plain", envTestSignV2(t, good, priv), ErrMalformed, "decoding v2 payload"},
		{"signed by another key", envTestSignV2Type(t, PayloadTypeZstd, good, other), ErrUnknownKey, ""},
		{"signature over the plain type", func() []byte {
			env := envTestSignV2(t, good, priv) // signed under PayloadType…
			return []byte(strings.Replace(string(env), `"payloadType":"`+PayloadType+`"`, `"payloadType":"`+PayloadTypeZstd+`"`, 1))
		}(), ErrBadSignature, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ledger := NewFileLedger(t.TempDir() + "/ledger")
			o := opts
			o.Ledger = ledger
			got, err := Open(tt.env, o)
			if !errors.Is(err, tt.wantIs) || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
				t.Fatalf("Open() = %+v, %v; want %v saying %q", got, err, tt.wantIs, tt.wantMsg)
			}
			if _, ok, _ := ledger.Last(); ok {
				t.Error("a refused spec was recorded")
			}
		})
	}
}

// TestCompressedTypeNamedByOldAgents: agents that predate compressed specs
// accept only PayloadType and refuse anything else with
// `payloadType is "…", want "…"`, the type quoted up to 64 bytes: the whole
// compressed type fits, so such an agent names what it refused.
func TestCompressedTypeNamedByOldAgents(t *testing.T) {
	if got := truncateForMessage(PayloadTypeZstd); got != PayloadTypeZstd {
		t.Errorf("an old agent would quote the compressed type as %q", got)
	}
}

func mustEncodeV2(t testing.TB, s *spec.Spec) []byte {
	t.Helper()
	b, err := spec.EncodeV2(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecompressPayload checks that decompressing never panics and never
// returns more than MaxPayloadSize bytes, or nothing without an error.
func FuzzDecompressPayload(f *testing.F) {
	f.Add(compressPayload(mustEncodeV2(f, envTestSpec())))
	f.Add(zstdBomb(f, 1<<20))
	f.Add([]byte{})
	f.Add([]byte("\x28\xb5\x2f\xfd"))
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := decompressPayload(data)
		if err != nil {
			return
		}
		if len(plain) == 0 || len(plain) > MaxPayloadSize {
			t.Fatalf("decompressPayload() = %d bytes, want 1 to %d", len(plain), MaxPayloadSize)
		}
	})
}

func BenchmarkOpenV2Compressed(b *testing.B) {
	pub, priv := envTestKey("a")
	env, err := Seal(FormatV2, largeSpec(10_000), priv)
	if err != nil {
		b.Fatal(err)
	}
	opts := OpenOptions{Trusted: []ed25519.PublicKey{pub}, Now: envTestNowFunc(envTestNow)}
	b.SetBytes(int64(len(env)))
	for b.Loop() {
		if _, err := Open(env, opts); err != nil {
			b.Fatal(err)
		}
	}
}
