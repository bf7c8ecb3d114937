package packer

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/spec"
)

var updateEnvelopeGolden = flag.Bool("update-envelope-golden", false, "rewrite the golden envelopes in testdata")

func TestSealOpenRoundTrip(t *testing.T) {
	pubA, privA := envTestKey("a")
	pubB, privB := envTestKey("b")
	tests := []struct {
		name   string
		format Format
		spec   *spec.Spec
		keys   []ed25519.PrivateKey
		opts   OpenOptions
		wantID []string
	}{
		{
			name: "v2 one key", format: FormatV2, spec: envTestSpec(),
			keys: []ed25519.PrivateKey{privA},
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}}, wantID: []string{KeyID(pubA)},
		},
		{
			name: "v2 two keys threshold 2", format: FormatV2, spec: envTestSpec(),
			keys:   []ed25519.PrivateKey{privB, privA},
			opts:   OpenOptions{Trusted: []ed25519.PublicKey{pubA, pubB}, Threshold: 2},
			wantID: envTestSortedIDs(pubA, pubB),
		},
		{
			name: "v2 no expiry, no machines", format: FormatV2,
			spec: &spec.Spec{Serial: 9, IssuedAt: envTestIssued, Machines: []spec.Machine{}},
			keys: []ed25519.PrivateKey{privA},
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}}, wantID: []string{KeyID(pubA)},
		},
		{
			name: "v2 unsigned in insecure mode", format: FormatV2, spec: envTestSpec(),
			opts: OpenOptions{AllowUnsigned: true},
		},
		{
			name: "v1 one key", format: FormatV1, spec: envTestSpecV1(),
			keys: []ed25519.PrivateKey{privA},
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubB, pubA}, AllowV1: true}, wantID: []string{KeyID(pubA)},
		},
		{
			name: "v1 with credentials", format: FormatV1,
			spec: &spec.Spec{Machines: []spec.Machine{{Name: "m", Source: "https://x/m.tgz", Username: "u", Password: "p"}}},
			keys: []ed25519.PrivateKey{privA},
			opts: OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowV1: true}, wantID: []string{KeyID(pubA)},
		},
		{
			name: "v1 unsigned in insecure mode", format: FormatV1, spec: envTestSpecV1(),
			opts: OpenOptions{AllowV1: true, AllowUnsigned: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := envTestSeal(t, tt.format, tt.spec, tt.keys...)
			if bytes.HasSuffix(data, []byte("\n")) {
				t.Errorf("Seal(%s) output ends with a newline", tt.format)
			}
			tt.opts.Now = envTestNowFunc(envTestNow)
			got, err := Open(data, tt.opts)
			if err != nil {
				t.Fatalf("Open(Seal(%s)) error = %v", tt.format, err)
			}
			if diff := cmp.Diff(tt.spec, got.Spec); diff != "" {
				t.Errorf("Open(Seal(%s)).Spec mismatch (-want +got):\n%s", tt.format, diff)
			}
			if got.Format != tt.format {
				t.Errorf("Open(Seal(%s)).Format = %v, want %v", tt.format, got.Format, tt.format)
			}
			if diff := cmp.Diff(tt.wantID, got.KeyIDs); diff != "" {
				t.Errorf("Open(Seal(%s)).KeyIDs mismatch (-want +got):\n%s", tt.format, diff)
			}
			if got.Unchanged || got.Stale {
				t.Errorf("Open(Seal(%s)) Unchanged = %v, Stale = %v, want false, false", tt.format, got.Unchanged, got.Stale)
			}
		})
	}
}

func envTestSortedIDs(keys ...ed25519.PublicKey) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, KeyID(k))
	}
	slices.Sort(ids)
	return ids
}

func TestSealErrors(t *testing.T) {
	_, privA := envTestKey("a")
	_, privB := envTestKey("b")
	spliced := append(ed25519.PrivateKey{}, privA[:32]...)
	spliced = append(spliced, privB[32:]...)
	tests := []struct {
		name    string
		format  Format
		spec    *spec.Spec
		keys    []ed25519.PrivateKey
		wantErr string
	}{
		{name: "nil spec", format: FormatV2, wantErr: "sealing spec: spec is nil"},
		{name: "unknown format", format: 3, spec: envTestSpec(), wantErr: "sealing spec: unknown format 3"},
		{name: "duplicate key", format: FormatV2, spec: envTestSpec(), keys: []ed25519.PrivateKey{privA, privB, privA},
			wantErr: "sealing spec: key 2 (keyid " + KeyID(privA.Public().(ed25519.PublicKey)) + ") given more than once"},
		{name: "short key", format: FormatV2, spec: envTestSpec(), keys: []ed25519.PrivateKey{privA[:32]},
			wantErr: "sealing spec: key 0 is 32 bytes, want 64"},
		{name: "spliced key", format: FormatV2, spec: envTestSpec(), keys: []ed25519.PrivateKey{spliced},
			wantErr: "sealing spec: key 0: public half does not match the seed"},
		{name: "v1 with expiry", format: FormatV1, spec: envTestSpec(), keys: []ed25519.PrivateKey{privA},
			wantErr: "sealing v1 spec: v1 cannot carry an expiry, use v2"},
		{name: "v1 with two keys", format: FormatV1, spec: envTestSpecV1(), keys: []ed25519.PrivateKey{privA, privB},
			wantErr: "sealing v1 spec: v1 carries one signature, got 2 keys"},
		{name: "v2 serial 0", format: FormatV2, spec: envTestSpecWith(func(s *spec.Spec) { s.Serial = 0 }),
			wantErr: "sealing v2 spec: serial is 0, want at least 1"},
		{name: "v2 no issue time", format: FormatV2, spec: envTestSpecWith(func(s *spec.Spec) { s.IssuedAt = time.Time{} }),
			wantErr: "sealing v2 spec: issued_at is not set"},
		{name: "v2 with password", format: FormatV2, spec: envTestSpecWith(func(s *spec.Spec) { s.Machines[1].Password = "secret" }),
			wantErr: `sealing v2 spec: machines[1] ("motd"): password is v1 only, name a node-local credential in auth`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Seal(tt.format, tt.spec, tt.keys...)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Seal() = %s, %v, want error %q", got, err, tt.wantErr)
			}
		})
	}
}

// TestSealGolden pins the exact bytes Seal writes for a fixed spec and fixed
// keys (ed25519 signatures are deterministic). Run with -update-envelope-golden to rewrite.
func TestSealGolden(t *testing.T) {
	_, privA := envTestKey("a")
	_, privB := envTestKey("b")
	tests := []struct {
		name   string
		format Format
		spec   *spec.Spec
		keys   []ed25519.PrivateKey
		file   string
	}{
		{name: "v1", format: FormatV1, spec: envTestSpecV1(), keys: []ed25519.PrivateKey{privA}, file: "seal-v1.golden.json"},
		{name: "v2", format: FormatV2, spec: envTestSpec(), keys: []ed25519.PrivateKey{privA, privB}, file: "seal-v2.golden.json"},
		{name: "v2 unsigned", format: FormatV2, spec: envTestSpec(), file: "seal-v2-unsigned.golden.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := envTestSeal(t, tt.format, tt.spec, tt.keys...)
			path := filepath.Join("testdata", tt.file)
			if *updateEnvelopeGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file: %v (run go test -run TestSealGolden -update-envelope-golden)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Seal(%s) =\n%s\nwant (%s)\n%s", tt.format, got, path, want)
			}
		})
	}
}

// TestSealPayloadLayout pins the wire layout of both formats: field names,
// order, RFC 3339 UTC times, no HTML escaping of matchers.
func TestSealPayloadLayout(t *testing.T) {
	_, privA := envTestKey("a")
	const wantMachines = `[{"name":"facts","source":"https://files.example.net/facts-1.0.0.tar.gz","checksum":"f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf","verify_checksum":"1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339","match":"identity('^web') && has_command('facter')","size":1048576},` +
		`{"name":"motd","source":"nats://ARCHIVES/motd-2.1.0.tar.gz","checksum":"0b5f8b7d1c2a3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f","verify_checksum":"9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d","governor":"downloads","auth":"archives-reader"}]`

	var v2 struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(envTestSeal(t, FormatV2, envTestSpec(), privA), &v2); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(v2.Payload)
	if err != nil {
		t.Fatal(err)
	}
	wantPayload := `{"serial":1767225600,"issued_at":"2026-01-01T00:00:00Z","expires":"2026-01-31T00:00:00Z","machines":` + wantMachines + `}`
	if string(payload) != wantPayload {
		t.Errorf("v2 payload =\n%s\nwant\n%s", payload, wantPayload)
	}
	if v2.PayloadType != PayloadType || len(v2.Signatures) != 1 || v2.Signatures[0].KeyID != KeyID(privA.Public().(ed25519.PublicKey)) {
		t.Errorf("v2 envelope = %+v, want payloadType %q and one signature by keyid %s", v2, PayloadType, KeyID(privA.Public().(ed25519.PublicKey)))
	}

	// v1 carries Choria's fields only: no size or auth, and Choria's verify key.
	const wantV1Machines = `[{"name":"facts","source":"https://files.example.net/facts-1.0.0.tar.gz","checksum":"f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf","verify_checksum":"1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339","verify":"SHA256SUMS","match":"identity('^web') && has_command('facter')"},` +
		`{"name":"motd","source":"nats://ARCHIVES/motd-2.1.0.tar.gz","checksum":"0b5f8b7d1c2a3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f","verify_checksum":"9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d","verify":"SHA256SUMS","governor":"downloads"}]`
	unsignedV1 := envTestSeal(t, FormatV1, envTestSpecV1())
	want := `{"machines":"` + base64.StdEncoding.EncodeToString([]byte(wantV1Machines)) + `"}`
	if _, err := Seal(FormatV1, &spec.Spec{Machines: envTestSpec().Machines}); err == nil || !strings.Contains(err.Error(), "size is v2 only, use v2") {
		t.Errorf("Seal(v1, spec with size and auth) error = %v, want a refusal", err)
	}
	if string(unsignedV1) != want {
		t.Errorf("Seal(v1, unsigned) =\n%s\nwant\n%s", unsignedV1, want)
	}

	empty := envTestSeal(t, FormatV1, &spec.Spec{})
	if want := `{"machines":"W10="}`; string(empty) != want {
		t.Errorf("Seal(v1, no machines) = %s, want %s", empty, want)
	}
}
