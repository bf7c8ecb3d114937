package manager

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/mms-io/mms/packer"
)

// PublicKey holds trusted spec-signing keys compiled into the binary: hex
// ed25519 public keys, comma-separated, set at build time with
//
//	go build -ldflags "-X github.com/mms-io/mms/manager.PublicKey=<hex>[,<hex>…]" ./cmd/mms
//
// [NewTrust] trusts these keys only when it is given none: configured keys
// replace them, they are never merged, so a node can rotate away from a
// compiled-in key without a rebuild. Like Choria's machines.PublicKey it
// exists so a standard binary can carry its organisation's key. Only the
// linker writes it; the code never changes it.
var PublicKey string

// The kinds of trust configuration NewTrust refuses. Callers that know
// where the configuration came from (flags, watcher properties) match them
// with errors.Is to name their own fields.
var (
	// ErrNoTrustedKeys means there is no key to verify specs with (none
	// given, none compiled in) and unsigned specs were not allowed.
	ErrNoTrustedKeys = errors.New("no trusted spec-signing keys")
	// ErrThreshold means the threshold is negative or more than the
	// distinct trusted keys, so no spec could ever be accepted.
	ErrThreshold = packer.ErrThreshold
	// ErrUnsignedWithKeys means unsigned specs were allowed while keys are
	// trusted: either signatures are checked or they are not.
	ErrUnsignedWithKeys = errors.New("unsigned specs allowed with trusted keys")
	// ErrCompiledKey means a key compiled into the binary does not parse.
	ErrCompiledKey = errors.New("compiled-in public key")
)

// TrustConfig is a node's spec-signing policy as configured.
type TrustConfig struct {
	// Keys are the trusted public keys; empty means the keys compiled in
	// with [PublicKey].
	Keys []ed25519.PublicKey
	// Threshold is how many distinct trusted keys must sign; 0 means 1.
	Threshold int
	// AllowV1 accepts v1 (Choria) envelopes, which have no serial or
	// expiry and so no replay protection.
	AllowV1 bool
	// Unsigned accepts specs whatever their signatures (insecure).
	Unsigned bool
}

// Trust is a node's spec-signing policy, resolved once by [NewTrust]: the
// distinct trusted keys in the order given, how many must sign, and whether
// v1 envelopes and unsigned specs are accepted. The reconciler hands it to
// packer.Open as it is. The zero Trust accepts nothing.
type Trust struct {
	keys      []ed25519.PublicKey
	threshold int
	allowV1   bool
	unsigned  bool
	resolved  bool
}

// NewTrust resolves c: with no keys it takes the compiled-in ones
// ([PublicKey]); it drops repeated keys; and it refuses a policy that could
// never accept a spec or is contradictory. Its errors wrap
// [ErrNoTrustedKeys], [ErrThreshold], [ErrUnsignedWithKeys] or
// [ErrCompiledKey], or packer's errors for a malformed key.
func NewTrust(c TrustConfig) (Trust, error) {
	keys := c.Keys
	if len(keys) == 0 {
		compiled, err := CompiledKeys()
		if err != nil {
			return Trust{}, err
		}
		keys = compiled
	}
	t := Trust{threshold: c.Threshold, allowV1: c.AllowV1, unsigned: c.Unsigned, resolved: true}
	for _, k := range keys {
		if !containsKey(t.keys, k) {
			t.keys = append(t.keys, k)
		}
	}
	switch {
	case c.Unsigned && len(t.keys) > 0:
		return Trust{}, fmt.Errorf("%w: either verify signatures or do not", ErrUnsignedWithKeys)
	case !c.Unsigned && len(t.keys) == 0:
		return Trust{}, fmt.Errorf("%w: configure the keys that sign specs (or build them in with -ldflags \"-X github.com/mms-io/mms/manager.PublicKey=<hex>\"); accepting unsigned specs must be asked for explicitly", ErrNoTrustedKeys)
	}
	opts := t.openOptions(nil)
	if err := opts.Validate(); err != nil {
		return Trust{}, err
	}
	t.threshold = max(t.threshold, 1)
	return t, nil
}

// Keys returns the distinct trusted keys, in the order configured.
func (t Trust) Keys() []ed25519.PublicKey { return append([]ed25519.PublicKey(nil), t.keys...) }

// KeyIDs returns the key ids of the trusted keys, in order.
func (t Trust) KeyIDs() []string {
	ids := make([]string, len(t.keys))
	for i, k := range t.keys {
		ids[i] = packer.KeyID(k)
	}
	return ids
}

// Threshold returns how many distinct trusted keys must sign a spec.
func (t Trust) Threshold() int { return t.threshold }

// AllowV1 reports whether v1 (Choria) envelopes are accepted.
func (t Trust) AllowV1() bool { return t.allowV1 }

// Unsigned reports whether specs are accepted whatever their signatures.
func (t Trust) Unsigned() bool { return t.unsigned }

// openOptions are the packer.Open options of t with ledger.
func (t Trust) openOptions(ledger packer.Ledger) packer.OpenOptions {
	return packer.OpenOptions{
		Trusted:       t.keys,
		Threshold:     t.threshold,
		AllowV1:       t.allowV1,
		AllowUnsigned: t.unsigned,
		Ledger:        ledger,
	}
}

// containsKey reports whether keys holds k.
func containsKey(keys []ed25519.PublicKey, k ed25519.PublicKey) bool {
	for _, have := range keys {
		if have.Equal(k) {
			return true
		}
	}
	return false
}

// CompiledKeys returns the keys in [PublicKey], each checked, in order.
func CompiledKeys() ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	var errs []error
	for i, k := range strings.Split(PublicKey, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		pk, err := packer.ParsePublicKey(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %d: %w", ErrCompiledKey, i+1, err))
			continue
		}
		keys = append(keys, pk)
	}
	return keys, errors.Join(errs...)
}

// IsZero reports whether t was never resolved by NewTrust (it accepts
// nothing).
func (t Trust) IsZero() bool { return !t.resolved }
