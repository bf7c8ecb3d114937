package manager

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/packer"
)

// trustOf resolves c for a test and panics if NewTrust refuses it.
func trustOf(c TrustConfig) Trust {
	t, err := NewTrust(c)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNewTrust(t *testing.T) {
	key := func() ed25519.PublicKey {
		pub, _, err := packer.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	a, b, c := key(), key(), key()
	tests := []struct {
		name      string
		cfg       TrustConfig
		compiled  string
		wantKeys  []ed25519.PublicKey
		threshold int
		wantIs    error
		wantErr   string
	}{
		{name: "one key", cfg: TrustConfig{Keys: []ed25519.PublicKey{a}}, wantKeys: []ed25519.PublicKey{a}, threshold: 1},
		{name: "repeated keys count once", cfg: TrustConfig{Keys: []ed25519.PublicKey{a, b, a}, Threshold: 2}, wantKeys: []ed25519.PublicKey{a, b}, threshold: 2},
		{name: "compiled-in keys when none given", compiled: packer.FormatPublicKey(c) + ", " + strings.ToUpper(packer.FormatPublicKey(a)), wantKeys: []ed25519.PublicKey{c, a}, threshold: 1},
		{name: "given keys replace compiled-in ones", cfg: TrustConfig{Keys: []ed25519.PublicKey{a}}, compiled: packer.FormatPublicKey(c), wantKeys: []ed25519.PublicKey{a}, threshold: 1},
		{name: "unsigned without keys", cfg: TrustConfig{Unsigned: true}, threshold: 1},
		{name: "no keys", wantIs: ErrNoTrustedKeys},
		{name: "unsigned with keys", cfg: TrustConfig{Keys: []ed25519.PublicKey{a}, Unsigned: true}, wantIs: ErrUnsignedWithKeys},
		{name: "unsigned with compiled-in keys", cfg: TrustConfig{Unsigned: true}, compiled: packer.FormatPublicKey(c), wantIs: ErrUnsignedWithKeys},
		{name: "threshold above distinct keys", cfg: TrustConfig{Keys: []ed25519.PublicKey{a, a}, Threshold: 2}, wantIs: ErrThreshold, wantErr: "threshold 2 exceeds the 1 distinct trusted key"},
		{name: "negative threshold", cfg: TrustConfig{Keys: []ed25519.PublicKey{a}, Threshold: -1}, wantIs: ErrThreshold, wantErr: "threshold -1 is negative"},
		{name: "short key", cfg: TrustConfig{Keys: []ed25519.PublicKey{a[:31]}}, wantErr: "trusted key 0 is 31 bytes"},
		{name: "bad compiled-in key", compiled: packer.FormatPublicKey(a) + ",abc", wantIs: ErrCompiledKey, wantErr: "compiled-in public key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := PublicKey
			PublicKey = tt.compiled
			t.Cleanup(func() { PublicKey = old })
			got, err := NewTrust(tt.cfg)
			if tt.wantIs != nil || tt.wantErr != "" {
				if err == nil || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewTrust() = %v, want an error matching %v containing %q", err, tt.wantIs, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantKeys, got.Keys()); diff != "" || got.Threshold() != tt.threshold || got.Unsigned() != tt.cfg.Unsigned {
				t.Errorf("NewTrust() = keys %v threshold %d unsigned %v, want %v %d %v", got.Keys(), got.Threshold(), got.Unsigned(), tt.wantKeys, tt.threshold, tt.cfg.Unsigned)
			}
			if ids := got.KeyIDs(); len(ids) != len(tt.wantKeys) || (len(ids) > 0 && ids[0] != packer.KeyID(tt.wantKeys[0])) {
				t.Errorf("KeyIDs() = %v, want the ids of %v", ids, tt.wantKeys)
			}
		})
	}
}
