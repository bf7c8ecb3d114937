package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"
)

// benchMachines returns n distinct entries shaped like a large real spec
// (and like mms bench's spec rows): a source, both checksums and a
// matcher of its own each.
func benchMachines(n int) []Machine {
	ms := make([]Machine, n)
	for i := range ms {
		name := fmt.Sprintf("m%05d", i)
		sum := sha256.Sum256([]byte(name))
		sums := sha256.Sum256([]byte(name + "/SHA256SUMS"))
		ms[i] = Machine{
			Name:           name,
			Source:         "nats://ARCHIVES/" + name + ".tar.gz",
			Checksum:       hex.EncodeToString(sum[:]),
			VerifyChecksum: hex.EncodeToString(sums[:]),
			Match:          fmt.Sprintf(`identity('^edge-%05d[.]')`, i),
		}
	}
	return ms
}

func BenchmarkDecodeV2(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			payload, err := EncodeV2(&Spec{Serial: 1, IssuedAt: time.Unix(1e9, 0), Machines: benchMachines(n)})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeV2(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidateSpec is the validation of a spec's entries, matchers
// compiled, as an agent plans the first spec it sees.
func BenchmarkValidateSpec(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := &Spec{Serial: 1, IssuedAt: time.Unix(1e9, 0), Machines: benchMachines(n)}
			for b.Loop() {
				var cache MatcherCache
				for _, m := range s.Machines {
					if _, err := m.Check(ValidateOptions{}, &cache); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
