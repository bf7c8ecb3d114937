package packer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/mms-io/mms/spec"
)

// envTestKey derives a fixed ed25519 key pair from label, so signatures and
// golden envelopes are the same on every run.
func envTestKey(label string) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := sha256.Sum256([]byte("mms packer test key " + label))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return priv.Public().(ed25519.PublicKey), priv
}

// envTestIssued is the fixed issue time of envTestSpec; envTestNow is the
// fixed "now" the Open tests run at, ten minutes later.
var (
	envTestIssued = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	envTestNow    = envTestIssued.Add(10 * time.Minute)
)

// envTestSpec returns a fixed v2 spec with two machines.
func envTestSpec() *spec.Spec {
	return &spec.Spec{
		Serial:   1767225600,
		IssuedAt: envTestIssued,
		Expires:  envTestIssued.Add(30 * 24 * time.Hour),
		Machines: []spec.Machine{
			{
				Name:           "facts",
				Source:         "https://files.example.net/facts-1.0.0.tar.gz",
				Checksum:       "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf",
				VerifyChecksum: "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339",
				Match:          "identity('^web') && has_command('facter')",
				Size:           1 << 20,
			},
			{
				Name:           "motd",
				Source:         "nats://ARCHIVES/motd-2.1.0.tar.gz",
				Checksum:       "0b5f8b7d1c2a3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
				VerifyChecksum: "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d",
				Governor:       "downloads",
				Auth:           "archives-reader",
			},
		},
	}
}

// envTestSpecV1 returns envTestSpec as v1 can carry it: no serial or times.
func envTestSpecV1() *spec.Spec {
	s := envTestSpec()
	for i := range s.Machines {
		// size and auth are v2 fields; verify is Choria's.
		s.Machines[i].Size, s.Machines[i].Auth, s.Machines[i].Verify = 0, "", "SHA256SUMS"
	}
	return &spec.Spec{Machines: s.Machines}
}

// envTestSpecWith returns envTestSpec changed by edit.
func envTestSpecWith(edit func(*spec.Spec)) *spec.Spec {
	s := envTestSpec()
	edit(s)
	return s
}

// envTestSeal seals s or fails the test.
func envTestSeal(t testing.TB, f Format, s *spec.Spec, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Seal(f, s, keys...)
	if err != nil {
		t.Fatalf("Seal(%s) error = %v", f, err)
	}
	return data
}

// envTestNowFunc returns an OpenOptions.Now that always returns now.
func envTestNowFunc(now time.Time) func() time.Time {
	return func() time.Time { return now }
}

// envTestSignV2 builds a v2 envelope around arbitrary payload bytes, signed
// by keys the way Seal signs, so tests can make signed but odd payloads.
func envTestSignV2(t testing.TB, payload []byte, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	return envTestSignV2Type(t, PayloadType, payload, keys...)
}

// envTestSignV2Type is envTestSignV2 with another payload type.
func envTestSignV2Type(t testing.TB, payloadType string, payload []byte, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	env := dsse.Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{},
	}
	for _, k := range keys {
		env.Signatures = append(env.Signatures, dsse.Signature{
			KeyID: KeyID(k.Public().(ed25519.PublicKey)),
			Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(k, dsse.PAE(payloadType, payload))),
		})
	}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// envTestSealCompressed seals s as a compressed v2 envelope signed by keys.
func envTestSealCompressed(t testing.TB, s *spec.Spec, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := SealWith(FormatV2, s, SealOptions{Compression: CompressAlways}, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// zstdBomb returns a small zstd payload that decompresses to n bytes of a
// valid-looking JSON prefix followed by spaces.
func zstdBomb(t testing.TB, n int) []byte {
	t.Helper()
	plain := bytes.Repeat([]byte(" "), n)
	copy(plain, `{"serial":1,"machines":[]}`)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(zstd.MaxWindowSize))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(plain, nil)
}

// envTestSignV1 builds a v1 envelope around arbitrary machines bytes the way
// Choria's `mms pack` does, signed by key when it is not nil.
func envTestSignV1(t testing.TB, raw []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	env := struct {
		Machines  []byte `json:"machines"`
		Signature string `json:"signature,omitempty"`
	}{Machines: raw}
	if key != nil {
		env.Signature = hex.EncodeToString(ed25519.Sign(key, raw))
	}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// envTestEditJSON decodes an envelope into a generic map, lets edit change
// it and encodes it again.
func envTestEditJSON(t testing.TB, data []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
