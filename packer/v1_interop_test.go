package packer

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/spec"
)

// choriaReadmeSpec is the spec printed in the README of Choria's machines
// watcher (reference/seed-choria-machines-watcher.txt): the output of
// `mms pack machines.json <choriaPrivateKey>`, verbatim.
const choriaReadmeSpec = `{"machines":"WwogewogICAibmFtZSI6ICJmYWN0cyIsCiAgICAgInNvdXJjZSI6ICJodHRwczovL215LmV4YW1wbGUubmV0L21ldGFkYXRhL21ldGFkYXRhLW1hY2hpbmUtMS4wLjAudGd6IiwKICAgICAidmVyaWZ5IjogIlNIQTI1NlNVTVMiLAogICAgICJ2ZXJpZnlfY2hlY2tzdW0iOiAiMWU4NTcxOWM2OTU5ZWIwZjJjOGYyMTY2ZTMwYWU5NTJjY2FlZjJjMjg2ZjMxODY4ZWExZDMxMWQzNzM4YTMzOSIsCiAgICAgImNoZWNrc3VtIjogImYxMWVhMjAwNWRlOTdiZjMwOWJhZmFjNDZlNzdjMDE5MjUzMDdhMjY2NzVmNDRmMzg4ZDQ1MDJkMmI5ZDAwYmYiLAogICAgICJtYXRjaCI6ICJoYXNfY29tbWFuZCgnZmFjdGVyJykiCiB9Cl0K","signature":"f06d4a1cfe9ac79d26b5e6646fdfa9d845a5506c9a2fe0a71fb8416f6f7edd253a1eb46363c12ca5f6148b19ab1ed9a5f25c89b09b3360a09b7d054bf4b55204"}`

// choriaReadmeMachines is the machines.json of the same README, byte for
// byte (its indentation, its "verify" key Choria ignores, a final newline).
const choriaReadmeMachines = "[\n {\n   \"name\": \"facts\",\n     \"source\": \"https://my.example.net/metadata/metadata-machine-1.0.0.tgz\",\n     \"verify\": \"SHA256SUMS\",\n     \"verify_checksum\": \"1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339\",\n     \"checksum\": \"f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf\",\n     \"match\": \"has_command('facter')\"\n }\n]\n"

// choriaSpecification is Choria's envelope type (machineswatcher.Specification).
type choriaSpecification struct {
	Machines  []byte `json:"machines"`
	Signature string `json:"signature,omitempty"`
}

// choriaManagedMachine is the part of Choria's ManagedMachine that json reads.
type choriaManagedMachine struct {
	Name                     string `json:"name"`
	Source                   string `json:"source"`
	Username                 string `json:"username"`
	Password                 string `json:"password"`
	ContentChecksumsChecksum string `json:"verify_checksum"`
	ArchiveChecksum          string `json:"checksum"`
	Matcher                  string `json:"match"`
	Governor                 string `json:"governor"`
}

// choriaPack is Choria's `mms pack`, reimplemented: the raw file bytes, a hex
// ed25519 signature over them, json.Marshal of the envelope, a newline.
func choriaPack(t testing.TB, raw []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	s := choriaSpecification{Machines: raw}
	if key != nil {
		s.Signature = hex.EncodeToString(ed25519.Sign(key, raw))
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// choriaVerify is Choria's machines watcher check, reimplemented from its
// description: base64-decode machines, hex-decode the signature, verify.
func choriaVerify(envelope []byte, pub ed25519.PublicKey) ([]choriaManagedMachine, bool) {
	var env map[string]string
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, false
	}
	raw, err := base64.StdEncoding.DecodeString(env["machines"])
	if err != nil {
		return nil, false
	}
	sig, err := hex.DecodeString(env["signature"])
	if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, raw, sig) {
		return nil, false
	}
	var machines []choriaManagedMachine
	if err := json.Unmarshal(raw, &machines); err != nil {
		return nil, false
	}
	return machines, true
}

func choriaReadmeKeys(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, err := ParsePublicKey(choriaPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(choriaPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// TestChoriaReadmeSpecOpens: interop vector (a), the real spec from Choria's
// README, opens with its public key.
func TestChoriaReadmeSpecOpens(t *testing.T) {
	pub, _ := choriaReadmeKeys(t)
	want := &spec.Spec{Machines: []spec.Machine{{
		Name:           "facts",
		Source:         "https://my.example.net/metadata/metadata-machine-1.0.0.tgz",
		VerifyChecksum: "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339",
		Checksum:       "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf",
		Verify:         "SHA256SUMS",
		Match:          "has_command('facter')",
	}}}
	for _, data := range []string{choriaReadmeSpec, choriaReadmeSpec + "\n"} {
		got, err := Open([]byte(data), OpenOptions{Trusted: []ed25519.PublicKey{pub}, AllowV1: true})
		if err != nil {
			t.Fatalf("Open(Choria README spec) error = %v", err)
		}
		if diff := cmp.Diff(want, got.Spec); diff != "" {
			t.Errorf("Open(Choria README spec).Spec mismatch (-want +got):\n%s", diff)
		}
		if got.Format != FormatV1 || !cmp.Equal(got.KeyIDs, []string{choriaKeyID}) {
			t.Errorf("Open(Choria README spec) = format %v, keyids %v, want v1, [%s]", got.Format, got.KeyIDs, choriaKeyID)
		}
	}
	if _, err := Open([]byte(choriaReadmeSpec), OpenOptions{Trusted: []ed25519.PublicKey{pub}}); !errors.Is(err, ErrLegacyRefused) {
		t.Errorf("Open(Choria README spec) without AllowV1 error = %v, want %v", err, ErrLegacyRefused)
	}
	other, _ := envTestKey("a")
	if _, err := Open([]byte(choriaReadmeSpec), OpenOptions{Trusted: []ed25519.PublicKey{other}, AllowV1: true}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Open(Choria README spec) with another key error = %v, want %v", err, ErrBadSignature)
	}
}

// TestChoriaPackReproducesReadme checks the reimplemented Choria pack against
// the real output: same file and key, byte-identical envelope.
func TestChoriaPackReproducesReadme(t *testing.T) {
	_, priv := choriaReadmeKeys(t)
	got := choriaPack(t, []byte(choriaReadmeMachines), priv)
	if want := choriaReadmeSpec + "\n"; string(got) != want {
		t.Errorf("choriaPack(README machines.json) =\n%s\nwant\n%s", got, want)
	}
}

// TestChoriaPackedSpecOpens: interop vector (b), specs made by Choria's pack
// algorithm with a fixed key open, with their raw bytes as the digest.
func TestChoriaPackedSpecOpens(t *testing.T) {
	pubA, privA := envTestKey("a")
	tests := []struct {
		name string
		raw  string
		want []spec.Machine
	}{
		{
			name: "credentials and governor",
			raw:  "[\n  {\"name\": \"web\", \"source\": \"https://h/web-1.tgz\", \"username\": \"bob\", \"password\": \"s3cret\",\n   \"checksum\": \"aa\", \"verify_checksum\": \"bb\", \"match\": \"identity('^web') && has_file('/etc/x')\", \"governor\": \"dl\"}\n]\n",
			want: []spec.Machine{{Name: "web", Source: "https://h/web-1.tgz", Username: "bob", Password: "s3cret", Checksum: "aa", VerifyChecksum: "bb", Match: "identity('^web') && has_file('/etc/x')", Governor: "dl"}},
		},
		{name: "empty list", raw: "[]", want: []spec.Machine{}},
		{
			name: "windows line endings and verify key",
			raw:  "[\r\n{\"name\":\"a\",\"source\":\"https://h/a.tgz\",\"verify\":\"SHA256SUMS\",\"checksum\":\"c\",\"verify_checksum\":\"v\"}\r\n]",
			want: []spec.Machine{{Name: "a", Source: "https://h/a.tgz", Checksum: "c", VerifyChecksum: "v", Verify: "SHA256SUMS"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open(choriaPack(t, []byte(tt.raw), privA), OpenOptions{Trusted: []ed25519.PublicKey{pubA}, AllowV1: true})
			if err != nil {
				t.Fatalf("Open(choriaPack(…)) error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Spec.Machines); diff != "" {
				t.Errorf("Open(choriaPack(…)).Spec.Machines mismatch (-want +got):\n%s", diff)
			}
			in, err := Inspect(choriaPack(t, []byte(tt.raw), privA))
			if err != nil || in.Digest != got.Digest {
				t.Errorf("Inspect(…).Digest = %v, %v, want %s", in, err, got.Digest)
			}
		})
	}
}

// TestSealV1VerifiesUnderChoria: interop vector (c), Seal's v1 output
// verifies under Choria's algorithm and decodes into Choria's entry type.
func TestSealV1VerifiesUnderChoria(t *testing.T) {
	pubA, privA := envTestKey("a")
	pubB, _ := envTestKey("b")
	data := envTestSeal(t, FormatV1, &spec.Spec{Machines: []spec.Machine{{
		Name: "web", Source: "https://h/web-1.tgz", Checksum: "aa", VerifyChecksum: "bb",
		Match: "identity('^web') && has_file('/etc/x')", Governor: "dl", Username: "bob", Password: "s3cret",
	}}}, privA)
	got, ok := choriaVerify(data, pubA)
	if !ok {
		t.Fatalf("choriaVerify(Seal(v1)) = false, want true; envelope %s", data)
	}
	want := []choriaManagedMachine{{
		Name: "web", Source: "https://h/web-1.tgz", Username: "bob", Password: "s3cret",
		ContentChecksumsChecksum: "bb", ArchiveChecksum: "aa", Matcher: "identity('^web') && has_file('/etc/x')", Governor: "dl",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("choriaVerify(Seal(v1)) machines mismatch (-want +got):\n%s", diff)
	}
	if _, ok := choriaVerify(data, pubB); ok {
		t.Errorf("choriaVerify(Seal(v1), other key) = true, want false")
	}
	// Choria's own envelope type decodes it too.
	var cs choriaSpecification
	if err := json.Unmarshal(data, &cs); err != nil || !ed25519.Verify(pubA, cs.Machines, envTestHex(t, cs.Signature)) {
		t.Errorf("json.Unmarshal(Seal(v1)) into Choria's Specification: err %v, or signature does not verify", err)
	}
}

func envTestHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
