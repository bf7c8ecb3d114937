// Package spec is the desired-state model of mms: the managed-machine entries
// an operator signs with `mms pack`, the spec that carries them (serial, issue
// and expiry times), their validation, and the expr matchers that decide which
// node runs which machine.
//
// The package does no I/O of its own: matcher probes such as has_file go
// through functions the caller injects in [Env], so validation and matching
// are cheap and deterministic in tests.
package spec

import "time"

// Machine is one managed-machine entry of a spec: an archive to fetch, the
// checksums that pin its bytes, and an optional matcher that selects nodes.
//
// The JSON field names are those of Choria's machines watcher, so v1 specs
// interoperate. Username and Password exist only in v1 (Choria) entries; v2
// entries name a node-local credential in Auth instead.
type Machine struct {
	// Name is the machine name and the directory it is installed in;
	// it must match [NamePattern].
	Name string `json:"name"`
	// Source is where the archive comes from: https://…, http://… (only
	// when the caller allows it) or nats://BUCKET/OBJECT (a JetStream object store).
	Source string `json:"source"`
	// Checksum is the lowercase hex sha256 of the archive.
	Checksum string `json:"checksum"`
	// VerifyChecksum is the lowercase hex sha256 of the archive's SHA256SUMS file.
	VerifyChecksum string `json:"verify_checksum"`
	// Match is an optional expr expression; empty matches every node.
	Match string `json:"match,omitempty"`
	// Governor optionally names a fleet-wide download concurrency limit.
	Governor string `json:"governor,omitempty"`
	// Size is the optional declared size of the archive in bytes; a download
	// longer than this is cut off.
	Size int64 `json:"size,omitempty"`
	// Auth names a node-local credential used to fetch Source (v2 only).
	Auth string `json:"auth,omitempty"`
	// Username is a v1 (Choria) basic-auth user. It is honoured but never
	// written to disk or logs.
	Username string `json:"username,omitempty"`
	// Password is a v1 (Choria) basic-auth password; see Username.
	Password string `json:"password,omitempty"`
}

// Spec is the signed desired state: the list of machines plus the metadata
// that protects it against replay and indefinite freeze.
type Spec struct {
	// Serial increases with every spec an operator publishes; an agent
	// ignores a spec older than the last one it accepted. v1 specs have
	// serial 0.
	Serial uint64 `json:"serial"`
	// IssuedAt is when the spec was packed.
	IssuedAt time.Time `json:"issued_at"`
	// Expires, when not zero, is when the spec stops being acceptable.
	Expires time.Time `json:"expires,omitzero"`
	// Machines is the desired set of managed machines.
	Machines []Machine `json:"machines"`
}
