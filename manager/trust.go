package manager

import (
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
// The compiled-in manager machine trusts these keys only when the node
// configures none (agent.Node.TrustedKeys is empty): configured keys replace
// them, they are never merged, so a node can rotate away from a compiled-in
// key without a rebuild. Like Choria's machines.PublicKey it exists so a
// standard binary can carry its organisation's key. Only the linker writes
// it; the code never changes it.
var PublicKey string

// ErrNoTrustedKeys means the manager has no key to verify specs with and
// unsigned specs were not allowed.
var ErrNoTrustedKeys = errors.New("no trusted spec-signing keys")

// CompiledKeys returns the keys in [PublicKey], each checked, in order.
func CompiledKeys() ([]string, error) {
	return parseKeyList(PublicKey)
}

// parseKeyList splits a comma-separated list of hex public keys and checks
// each; empty items are ignored.
func parseKeyList(list string) ([]string, error) {
	var keys []string
	var errs []error
	for i, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if _, err := packer.ParsePublicKey(k); err != nil {
			errs = append(errs, fmt.Errorf("compiled-in public key %d: %w", i+1, err))
			continue
		}
		keys = append(keys, strings.ToLower(k))
	}
	return keys, errors.Join(errs...)
}
