// Package fleetstatus is the fleet's view of its agents: one status
// document per agent in the NATS KV bucket MACHINES_STATUS, what it says,
// how its key is derived from the agent's identity, and the writer the agent
// runs to keep it current.
//
// An agent's document says which spec it runs (serial, digest, format,
// stale, error), every machine it runs or failed to run (name, version,
// state, path, checksum, last outcome, last error), the health of its NATS
// connection (including permission violations, which otherwise look like
// timeouts) and its last error. A [Recorder] learns the spec and the
// manager's per-entry results from the manager itself, a typed call after
// every reconcile pass (it is a manager.StatusReporter, handed to the
// manager in manager.Settings), and load failures and errors from the
// agent's own events (wrap the agent's publisher in a [Publisher]): the
// events stay the public stream and the document never re-parses the
// manager's. A [Writer] combines them with the host's machine states and
// writes the document when something changes (at most once per
// MinInterval) and on every heartbeat, so a document whose updated_at is
// older than a few heartbeats belongs to an agent that stopped or lost
// NATS. `mms status` reads them all.
//
// # Keys and permissions
//
// The key is [Key] of the identity. An agent needs to publish to
// $KV.MACHINES_STATUS.<key> and $JS.API.STREAM.INFO.KV_MACHINES_STATUS
// (to bind the bucket); it never creates the bucket.
package fleetstatus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natsbox"
)

// Bucket is the KV bucket agents write their status documents to.
const Bucket = "MACHINES_STATUS"

// MaxDocumentSize caps a status document, written or read (the server's
// default max_payload).
const MaxDocumentSize = 1 << 20

// BucketConfig is the configuration of [Bucket] when the agent's embedded
// server (or `mms status --create`) creates it: one value per key, values up
// to [MaxDocumentSize]. Keys never expire: an agent that stops writing must
// show up as stale, not vanish.
func BucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       Bucket,
		Description:  "mms agent status documents, one per agent",
		History:      1,
		MaxValueSize: MaxDocumentSize,
	}
}

// Document is one agent's status. Every field is always present in the
// JSON (the shape is stable for tools) except those marked omitempty.
type Document struct {
	// Identity is the agent's node identity (the key is derived from it,
	// see [Key]).
	Identity string `json:"identity"`
	// AgentVersion is the mms version of the agent.
	AgentVersion string `json:"agent_version"`
	// StartedAt is when the agent started; UpdatedAt when this document
	// was written.
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// StoppedAt is set by the last write of an agent that shut down
	// cleanly.
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// Heartbeat is how often the agent rewrites the document even when
	// nothing changed, as a Go duration ("30s"); readers call a document
	// older than a few heartbeats stale.
	Heartbeat string `json:"heartbeat"`
	// Spec is the spec the agent's manager last reported.
	Spec Spec `json:"spec"`
	// Machines are the machines the agent runs, plus those it was told to
	// run but could not (State empty), sorted by name.
	Machines []Machine `json:"machines"`
	// NATS is the health of the agent's NATS connection.
	NATS natsbox.ConnState `json:"nats"`
	// LastError is the most recent error the agent saw (a watcher error, a
	// machine that failed to load, a failed status write), and when.
	LastError   string    `json:"last_error"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Spec is what the agent's manager last reported about the spec: the one
// the node runs (applied) and the last one it saw.
type Spec struct {
	// Serial is the applied spec's serial (0 for none, or a v1 spec).
	Serial uint64 `json:"serial"`
	// Digest is the sha256 of the applied spec's payload.
	Digest string `json:"digest"`
	// Format is the applied envelope's format, "v1" or "v2".
	Format string `json:"format"`
	// AcceptedAt is when the node accepted the applied spec.
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
	// Stale is true when the applied spec has expired and the agent keeps
	// running it.
	Stale bool `json:"stale"`
	// Error is why the last spec seen could not be applied, or which of
	// its entries failed.
	Error string `json:"error"`
	// Seen is the last spec the manager looked at and what it did with it.
	Seen SeenSpec `json:"seen"`
	// ReportedAt is when the manager last reported (zero before its first
	// report).
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// SeenApplied is SeenSpec.Outcome for a spec the node accepted.
const SeenApplied = "applied"

// SeenSpec is the last spec a node's manager looked at. When it was not
// applied, Serial and Digest are what it claims (unverified) and Outcome
// says why: a manager rejection kind ("replayed", "unknown_key",
// "expired", "legacy_refused", "spec_missing", …).
type SeenSpec struct {
	Serial  uint64 `json:"serial"`
	Digest  string `json:"digest"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// Machine is one machine on the agent.
type Machine struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// State is the machine's current state; empty when it is not running
	// (the manager or the host failed to install or load it).
	State string `json:"state"`
	// Path is the machine's directory.
	Path string `json:"path"`
	// CompiledIn marks machines compiled into the agent.
	CompiledIn bool `json:"compiled_in,omitempty"`
	// Checksum is the sha256 of the archive the manager installed it from.
	Checksum string `json:"checksum,omitempty"`
	// LastOutcome is the manager's last outcome for the machine (installed,
	// updated, unchanged, failed, rolled_back, …), else the host's (loaded,
	// load_failed).
	LastOutcome string `json:"last_outcome"`
	// LastError is every current problem of the machine: the manager's
	// reason for a failure, the host's load error, and each watcher's last
	// error ("watcher: error"), joined with "; ".
	LastError string `json:"last_error"`
}

// ParseDocument decodes a status document read from the bucket. Unknown
// fields are ignored (newer agents may add some); a document without an
// identity or an update time is an error.
func ParseDocument(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("status document is %d bytes, more than the %d allowed", len(data), MaxDocumentSize)
	}
	var d Document
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode status document: %w", err)
	}
	var errs []error
	if d.Identity == "" {
		errs = append(errs, errors.New("status document: identity is missing"))
	}
	if d.UpdatedAt.IsZero() {
		errs = append(errs, errors.New("status document: updated_at is missing"))
	}
	if d.Heartbeat != "" {
		if hb, err := time.ParseDuration(d.Heartbeat); err != nil || hb <= 0 {
			errs = append(errs, fmt.Errorf("status document: heartbeat %q is not a positive duration", d.Heartbeat))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Machines == nil {
		d.Machines = []Machine{}
	}
	return &d, nil
}

// HeartbeatInterval returns the document's heartbeat period, zero if the
// document does not say or says nonsense.
func (d *Document) HeartbeatInterval() time.Duration {
	hb, err := time.ParseDuration(d.Heartbeat)
	if err != nil || hb <= 0 {
		return 0
	}
	return hb
}
