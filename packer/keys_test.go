package packer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
)

// The key pair from Choria's machines watcher README (`mms keys` output).
const (
	choriaPublicKey  = "64031219d4922eed63a5f567303e98607c632139c01bc9fa4ca2514c2d9d30da"
	choriaPrivateKey = "d8bd4d6392af154e996a18a4ccd5f51931d8e861d42966a677d85fbb598b66d364031219d4922eed63a5f567303e98607c632139c01bc9fa4ca2514c2d9d30da"
	// choriaKeyID was computed outside Go:
	// echo -n $choriaPublicKey | xxd -r -p | sha256sum | cut -c1-16
	choriaKeyID = "d2f8b94e6ad36cac"
)

func TestGenerateKey(t *testing.T) {
	pub, priv, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey() error = %v", err)
	}
	gotPub, err := ParsePublicKey(FormatPublicKey(pub))
	if err != nil || !gotPub.Equal(pub) {
		t.Errorf("ParsePublicKey(FormatPublicKey(pub)) = %x, %v, want %x", gotPub, err, pub)
	}
	gotPriv, err := ParsePrivateKey(FormatPrivateKey(priv))
	if err != nil || !gotPriv.Equal(priv) {
		t.Errorf("ParsePrivateKey(FormatPrivateKey(priv)) error = %v, or key differs", err)
	}
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), pub) {
		t.Errorf("GenerateKey() public key does not match the private key")
	}
}

// publicKeyTests are ParsePublicKey's cases, and FuzzParsePublicKey's
// seeds.
var publicKeyTests = []struct {
	name    string
	text    string
	want    string
	wantErr string
}{
	{name: "choria key", text: choriaPublicKey, want: choriaPublicKey},
	{name: "trailing newline", text: choriaPublicKey + "\n", want: choriaPublicKey},
	{name: "surrounding spaces", text: "  \t" + choriaPublicKey + " \r\n", want: choriaPublicKey},
	{name: "uppercase hex", text: strings.ToUpper(choriaPublicKey), want: choriaPublicKey},
	{name: "empty", text: " \n", wantErr: "parsing public key: key is empty"},
	{name: "not hex", text: "zz" + choriaPublicKey[2:], wantErr: "parsing public key: key is not valid hex"},
	{name: "odd length", text: choriaPublicKey[1:], wantErr: "parsing public key: key is not valid hex"},
	{name: "too short", text: choriaPublicKey[:62], wantErr: "parsing public key: key is 31 bytes, want 32"},
	{name: "private key given", text: choriaPrivateKey + "\n", wantErr: ErrPrivateKeyGiven.Error()},
	{name: "64 bytes, not a private key", text: choriaPublicKey + choriaPublicKey, wantErr: "parsing public key: key is 64 bytes, want 32"},
	{name: "inner space", text: choriaPublicKey[:32] + " " + choriaPublicKey[32:], wantErr: "parsing public key: key is not valid hex"},
}

func TestParsePublicKey(t *testing.T) {
	for _, tt := range publicKeyTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePublicKey(tt.text)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParsePublicKey(%q) error = %v, want %q", tt.text, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePublicKey(%q) error = %v", tt.text, err)
			}
			if FormatPublicKey(got) != tt.want {
				t.Errorf("ParsePublicKey(%q) = %s, want %s", tt.text, FormatPublicKey(got), tt.want)
			}
		})
	}
}

// FuzzParsePublicKey: any text parses to a key that formats back to the
// text (trimmed, lowercase) or is refused without echoing key material.
func FuzzParsePublicKey(f *testing.F) {
	for _, tt := range publicKeyTests {
		f.Add(tt.text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := ParsePublicKey(text)
		if err != nil {
			if got != nil {
				t.Fatalf("ParsePublicKey(%q) = %x and error %v", text, got, err)
			}
			if trimmed := strings.TrimSpace(text); len(trimmed) >= 16 && strings.Contains(err.Error(), trimmed[:16]) {
				t.Fatalf("ParsePublicKey(%q) error %q echoes the key", text, err)
			}
			return
		}
		if FormatPublicKey(got) != strings.ToLower(strings.TrimSpace(text)) {
			t.Fatalf("ParsePublicKey(%q) = %s", text, FormatPublicKey(got))
		}
	})
}

func TestParsePrivateKey(t *testing.T) {
	otherPub, _ := envTestKey("other")
	spliced := choriaPrivateKey[:64] + FormatPublicKey(otherPub)
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{name: "choria key", text: choriaPrivateKey},
		{name: "trailing newline", text: choriaPrivateKey + "\n"},
		{name: "empty", text: "", wantErr: "parsing private key: key is empty"},
		{name: "not hex", text: choriaPrivateKey[:100] + "g" + choriaPrivateKey[101:], wantErr: "parsing private key: key is not valid hex"},
		{name: "seed only", text: choriaPrivateKey[:64], wantErr: "parsing private key: key is 32 bytes, want 64"},
		{name: "public half of another key", text: spliced, wantErr: "parsing private key: public half does not match the seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivateKey(tt.text)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParsePrivateKey(…) error = %v, want %q", err, tt.wantErr)
				}
				// Errors must never echo key material.
				for _, secret := range []string{choriaPrivateKey[:16], choriaPrivateKey[100:116], "'g'", "U+0067"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("ParsePrivateKey(…) error %q contains key material %q", err, secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePrivateKey(…) error = %v", err)
			}
			if FormatPrivateKey(got) != choriaPrivateKey {
				t.Errorf("FormatPrivateKey(ParsePrivateKey(k)) differs from k")
			}
			if FormatPublicKey(got.Public().(ed25519.PublicKey)) != choriaPublicKey {
				t.Errorf("ParsePrivateKey(…).Public() = %x, want %s", got.Public(), choriaPublicKey)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	pub, err := ParsePublicKey(choriaPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := KeyID(pub); got != choriaKeyID {
		t.Errorf("KeyID(%s) = %s, want %s", choriaPublicKey, got, choriaKeyID)
	}
	a, _ := envTestKey("a")
	b, _ := envTestKey("b")
	if KeyID(a) == KeyID(b) {
		t.Errorf("KeyID(a) = KeyID(b) = %s, want different ids", KeyID(a))
	}
	if !isKeyID(KeyID(a)) {
		t.Errorf("isKeyID(KeyID(a)) = false for %q", KeyID(a))
	}
}

func TestFormatText(t *testing.T) {
	for _, f := range []Format{FormatV1, FormatV2} {
		text, err := f.MarshalText()
		if err != nil {
			t.Fatalf("%v.MarshalText() error = %v", f, err)
		}
		var got Format
		if err := got.UnmarshalText(text); err != nil || got != f {
			t.Errorf("UnmarshalText(%q) = %v, %v, want %v", text, got, err, f)
		}
	}
	if got := Format(3).String(); got != "Format(3)" {
		t.Errorf("Format(3).String() = %q, want %q", got, "Format(3)")
	}
	if _, err := Format(0).MarshalText(); err == nil {
		t.Errorf("Format(0).MarshalText() error = nil, want an error")
	}
	var f Format
	if err := f.UnmarshalText([]byte("v3")); err == nil {
		t.Errorf("UnmarshalText(%q) error = nil, want an error", "v3")
	}
}
