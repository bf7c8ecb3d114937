// Package nodestatus is what each node reports about itself: one status
// document per agent in the NATS KV bucket MACHINES_STATUS, what it says,
// how its key is derived from the agent's identity, and the writer the agent
// runs to keep it current.
//
// An agent's document (version 2, see [DocumentVersion]) says which spec
// the node runs (applied: serial, digest, format, accepted at, expired) and
// separately the last spec it saw and what it did with it (seen: applied,
// or why not — ignored-older, untrusted, expired, …, with the reason), so
// a replayed or forged spec never hides behind the serial of the spec that
// runs; the keys the node trusts and how many must sign; one entry per spec
// entry (installed with version and checksum, skipped and the matcher that
// skipped it, failed and the error, downloading with bytes done and total,
// rolled back); every machine it runs or failed to run (name, version,
// state, path, last error); the health of its NATS connection (including
// permission violations, which otherwise look like timeouts) and its last
// error. [Document.Problems] lists what needs attention, for every view.
//
// A [Recorder] learns the specs and the manager's per-entry results from
// the manager itself, typed calls after every reconcile pass and during
// downloads (it is a manager.StatusReporter and manager.ProgressReporter,
// handed to the manager in manager.Settings), and load failures and errors
// from the agent's own events (wrap the agent's publisher in a
// [Publisher]): the events stay the public stream and the document never
// re-parses the manager's. A [Writer] combines them with the host's machine
// states and writes the document when something changes (at most once per
// MinInterval) and on every heartbeat, so a document whose updated_at is
// older than a few heartbeats belongs to an agent that stopped or lost
// NATS. `mms status` and `mms put --wait` read them all.
//
// # Keys, identities and permissions
//
// The key is [Key] of the identity, a reversible mapping ([IdentityOf]):
// a document speaks for the identity of the key it lives under, nothing
// else. An agent needs to publish to $KV.MACHINES_STATUS.<key> and
// $JS.API.STREAM.INFO.KV_MACHINES_STATUS (to bind the bucket); it never
// creates the bucket, and the per-node permissions `mms nats-config` writes
// let it write no other key. Readers go through [Read]: a document whose
// identity is not its key's is a [ForgedError] (agents ignore it, `mms
// status` flags it), and no time in a document may be later than when the
// server stored it.
package nodestatus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
)

// Bucket is the KV bucket agents write their status documents to.
const Bucket = "MACHINES_STATUS"

// MaxDocumentSize caps a status document, written or read (the server's
// default max_payload).
const MaxDocumentSize = 1 << 20

// DocumentVersion is the version of the document's shape that this
// package writes. Version 1 (documents without a "version") had one "spec"
// object mixing the applied and the last seen spec; version 2 splits them
// into "applied" and "seen" and adds "trust" and "entries". [ParseDocument]
// reads both.
const DocumentVersion = 2

// Document is one agent's status. Every field is always present in the
// JSON (the shape is stable for tools) except those marked omitempty or
// omitzero.
type Document struct {
	// Version is the document's shape, [DocumentVersion] when written by
	// this package.
	Version int `json:"version"`
	// Identity is the agent's node identity. It must be the identity of
	// the key the document lives under (see [Key] and [Read]).
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
	// Trust is who the node accepts specs from; null when the agent does
	// not say.
	Trust *Trust `json:"trust"`
	// Applied is the spec the node runs. It is null when the node has
	// never applied a spec (or, with Seen null too, when its manager has
	// not reported yet).
	Applied *Applied `json:"applied"`
	// Seen is the last spec the node's manager looked at and what it did
	// with it; null until the manager's first report.
	Seen *Seen `json:"seen"`
	// Entries has one entry per entry of the applied spec, in spec order,
	// then one per machine the manager purged in its last pass.
	Entries []Entry `json:"entries"`
	// Machines are the machines the agent runs, plus those it was told to
	// run but could not (State empty), sorted by name.
	Machines []Machine `json:"machines"`
	// NATS is the health of the agent's NATS connection.
	NATS natsbox.ConnState `json:"nats"`
	// LastError is the most recent error the agent saw (a watcher error, a
	// machine that failed to load, a failed status write), and when.
	LastError   string    `json:"last_error"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Trimmed, when set, says what the agent left out of the document to
	// keep it within [MaxWrittenSize].
	Trimmed string `json:"trimmed,omitempty"`
}

// Trust is a node's spec-signing policy (manager.Trust), as key ids.
type Trust struct {
	// KeyIDs are the ids of the trusted public keys (packer.KeyID).
	KeyIDs []string `json:"key_ids"`
	// Threshold is how many distinct trusted keys must sign a spec.
	Threshold int `json:"threshold"`
	// AllowV1 reports that v1 (Choria) envelopes are accepted.
	AllowV1 bool `json:"allow_v1"`
	// Unsigned reports that specs are accepted whatever their signatures.
	Unsigned bool `json:"unsigned"`
}

// Applied is the spec a node runs.
type Applied struct {
	// Serial is the spec's serial (0 for a v1 spec).
	Serial uint64 `json:"serial"`
	// Digest is the sha256 of the spec's payload.
	Digest string `json:"digest"`
	// Format is the envelope's format, "v1" or "v2".
	Format string `json:"format"`
	// AcceptedAt is when the node accepted it (zero when unknown).
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
	// Stale is true when the spec has expired and the node keeps running
	// it (nothing is purged until a new spec arrives).
	Stale bool `json:"stale"`
}

// The outcomes of a seen spec ([Seen].Outcome): the words of manager's
// one table of spec rejections (see manager.Rejection.Outcome), named here
// for readers of documents.
const (
	SeenApplied       = manager.SeenApplied
	SeenIgnoredOlder  = manager.SeenIgnoredOlder
	SeenEquivocation  = manager.SeenEquivocation
	SeenUntrusted     = manager.SeenUntrusted
	SeenExpired       = manager.SeenExpired
	SeenNotYetValid   = manager.SeenNotYetValid
	SeenSerialAhead   = manager.SeenSerialAhead
	SeenMalformed     = manager.SeenMalformed
	SeenInvalid       = manager.SeenInvalid
	SeenLegacyRefused = manager.SeenLegacyRefused
	SeenMissing       = manager.SeenMissing
	SeenError         = manager.SeenError
	SeenApplying      = manager.SeenApplying
)

// Seen is the last spec a node's manager looked at. When it was not
// applied, Serial, Digest and Format are what the envelope claims
// (unverified, when it decodes far enough to tell).
type Seen struct {
	Serial uint64 `json:"serial"`
	Digest string `json:"digest"`
	Format string `json:"format,omitempty"`
	// Outcome is what the node did with it: [SeenApplied] or why not
	// (see the Seen… constants).
	Outcome string `json:"outcome"`
	// Reason is the manager's error: the rejection, or the entries that
	// failed.
	Reason string `json:"reason,omitempty"`
	// At is when the manager reported it.
	At time.Time `json:"at,omitzero"`
}

// EntryDownloading is [Entry].Outcome while the manager downloads the
// entry's archive; every other outcome is a manager.EntryOutcome.
const EntryDownloading = "downloading"

// Entry is what the node did with one spec entry in the manager's last
// pass.
type Entry struct {
	// Name is the entry's machine name.
	Name string `json:"name"`
	// Outcome is the manager's outcome (installed, updated, unchanged,
	// skipped, failed, rolled_back, purged) or [EntryDownloading].
	Outcome string `json:"outcome"`
	// Reason says why: the error of a failure or a rollback, why the
	// matcher skipped it, a repair.
	Reason string `json:"reason,omitempty"`
	// Version is the version of the machine running under this name, if
	// one runs (after a failure or a rollback, the one still running).
	Version string `json:"version,omitempty"`
	// Checksum is the archive checksum the entry pins.
	Checksum string `json:"checksum,omitempty"`
	// Match is the matcher that skipped the entry, or failed to evaluate.
	Match string `json:"match,omitempty"`
	// Hold is the entry's hold when it holds the node (Outcome held: the
	// node keeps what it runs and is left out of the entry's rollout), or
	// failed to evaluate.
	Hold string `json:"hold,omitempty"`
	// Installed is the checksum of the version installed under the name
	// (after a rollback or while a rollout holds the node, the older one).
	Installed string `json:"installed,omitempty"`
	// Health is the health of the entry's version on this node: pending
	// (its health gate runs), healthy, unhealthy or rolled_back.
	Health string `json:"health,omitempty"`
	// HealthyAt is when it became healthy.
	HealthyAt time.Time `json:"healthy_at,omitzero"`
	// Download is the progress of the download under way, while Outcome
	// is [EntryDownloading].
	Download *Download `json:"download,omitempty"`
}

// Download is the progress of one archive download.
type Download struct {
	// Done and Total are bytes; Total is 0 when the size is unknown.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// StartedAt is the first report of the download, UpdatedAt the last.
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
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
// fields are ignored (newer agents may add some); a version 1 document
// (from an older agent) is read into the version 2 shape; a document
// without an identity or an update time is an error.
func ParseDocument(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("status document is %d bytes, more than the %d allowed", len(data), MaxDocumentSize)
	}
	var wire struct {
		Document
		Spec *specV1 `json:"spec"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, fmt.Errorf("decode status document: %w", err)
	}
	d := wire.Document
	if d.Version < 2 && wire.Spec != nil && d.Applied == nil && d.Seen == nil {
		d.Applied, d.Seen = wire.Spec.upgrade()
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
	if d.Entries == nil {
		d.Entries = []Entry{}
	}
	return &d, nil
}

// specV1 is the "spec" object of a version 1 document.
type specV1 struct {
	Serial     uint64    `json:"serial"`
	Digest     string    `json:"digest"`
	Format     string    `json:"format"`
	AcceptedAt time.Time `json:"accepted_at"`
	Stale      bool      `json:"stale"`
	Seen       *struct {
		Serial  uint64 `json:"serial"`
		Digest  string `json:"digest"`
		Outcome string `json:"outcome"`
		Reason  string `json:"reason"`
	} `json:"seen"`
	ReportedAt time.Time `json:"reported_at"`
}

// upgrade reads a version 1 spec object: its serial, digest and format
// are the applied spec's (when it names one); its seen outcome is a
// manager rejection kind, or "applied".
func (s *specV1) upgrade() (*Applied, *Seen) {
	var applied *Applied
	if s.Format != "" || s.Serial != 0 {
		applied = &Applied{Serial: s.Serial, Digest: s.Digest, Format: s.Format, AcceptedAt: s.AcceptedAt, Stale: s.Stale}
	}
	if s.Seen == nil || s.Seen.Outcome == "" {
		return applied, nil
	}
	outcome := s.Seen.Outcome
	if outcome != SeenApplied {
		outcome = manager.Rejection(outcome).Outcome("")
	}
	return applied, &Seen{Serial: s.Seen.Serial, Digest: s.Seen.Digest, Outcome: outcome, Reason: s.Seen.Reason, At: s.ReportedAt}
}

// AppliedSerial returns the serial of the applied spec, 0 when there is
// none (or it is a v1 spec).
func (d *Document) AppliedSerial() uint64 {
	if d.Applied == nil {
		return 0
	}
	return d.Applied.Serial
}

// StaleAfter returns how long the document may go without an update
// before its agent counts as stale: limit when positive, else three of the
// document's heartbeats (three of the default when it has none).
func (d *Document) StaleAfter(limit time.Duration) time.Duration {
	if limit > 0 {
		return limit
	}
	if hb := d.HeartbeatInterval(); hb > 0 {
		return 3 * hb
	}
	return 3 * DefaultHeartbeat
}

// Stale reports whether, at now, the agent has gone longer than
// StaleAfter(limit) without an update: it stopped or lost NATS. An agent
// that stopped cleanly (StoppedAt set) is stopped, not stale.
func (d *Document) Stale(now time.Time, limit time.Duration) bool {
	return d.StoppedAt.IsZero() && now.Sub(d.UpdatedAt) > d.StaleAfter(limit)
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
