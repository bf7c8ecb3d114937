package packer

import (
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mms-io/mms/spec"
)

// envBenchSpec returns a spec of n machines shaped like a real fleet's.
func envBenchSpec(n int) *spec.Spec {
	s := envTestSpec()
	s.Machines = make([]spec.Machine, n)
	for i := range s.Machines {
		s.Machines[i] = spec.Machine{
			Name:           fmt.Sprintf("machine-%03d", i),
			Source:         fmt.Sprintf("https://files.example.net/machines/machine-%03d-1.2.3.tar.gz", i),
			Checksum:       "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf",
			VerifyChecksum: "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339",
			Match:          fmt.Sprintf("identity('^web%d') && has_command('facter')", i),
			Size:           4 << 20,
		}
	}
	return s
}

// BenchmarkOpenV2 opens a signed 50-machine v2 spec without a ledger: size
// check, strict decode, one ed25519 verification, strict payload decode.
func BenchmarkOpenV2(b *testing.B) {
	pub, priv := envTestKey("a")
	data := envTestSeal(b, FormatV2, envBenchSpec(50), priv)
	opts := OpenOptions{Trusted: []ed25519.PublicKey{pub}, Now: envTestNowFunc(envTestNow)}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(data, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenV2Unchanged opens the same 50-machine spec against a
// FileLedger that already holds it: the steady state of a polling node.
func BenchmarkOpenV2Unchanged(b *testing.B) {
	pub, priv := envTestKey("a")
	data := envTestSeal(b, FormatV2, envBenchSpec(50), priv)
	opts := OpenOptions{Trusted: []ed25519.PublicKey{pub}, Now: envTestNowFunc(envTestNow), Ledger: NewFileLedger(filepath.Join(b.TempDir(), "ledger.json"))}
	if _, err := Open(data, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := Open(data, opts)
		if err != nil || !got.Unchanged {
			b.Fatalf("Open() = %+v, %v, want unchanged", got, err)
		}
	}
}

// BenchmarkSealV2 seals the 50-machine spec with one key.
func BenchmarkSealV2(b *testing.B) {
	_, priv := envTestKey("a")
	s := envBenchSpec(50)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(FormatV2, s, priv); err != nil {
			b.Fatal(err)
		}
	}
}
