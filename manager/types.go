package manager

import (
	"context"
	"errors"
	"time"
)

// EntryOutcome is what reconciling one machine entry did on this node. The
// values appear in the machines watcher's state events.
type EntryOutcome string

// The outcomes of reconciling an entry.
const (
	// EntryInstalled: the machine was installed for the first time.
	EntryInstalled EntryOutcome = "installed"
	// EntryUpdated: another version was replaced (and kept for rollback).
	EntryUpdated EntryOutcome = "updated"
	// EntryUnchanged: the installed machine already matches the entry; nothing
	// was downloaded.
	EntryUnchanged EntryOutcome = "unchanged"
	// EntrySkipped: the entry's matcher does not select this node.
	EntrySkipped EntryOutcome = "skipped"
	// EntryFailed: the entry could not be reconciled; the reason says why and
	// the machine directory is as it was.
	EntryFailed EntryOutcome = "failed"
	// EntryPurged: a machine this agent installed is no longer wanted and was
	// removed.
	EntryPurged EntryOutcome = "purged"
	// EntryRolledBack: the new version failed to load, or failed its
	// health gate, and the previous one was put back.
	EntryRolledBack EntryOutcome = "rolled_back"
	// EntryUnhealthy: a first install failed its health gate and was
	// stopped (there was nothing to roll back to).
	EntryUnhealthy EntryOutcome = "unhealthy"
	// EntryHeld: a rollout holds the node on the version it runs (its wave
	// has not started, the rollout is paused or halted), or the entry's
	// hold selects the node (MachineResult.Hold is set, the reason starts
	// with HoldHeld); the reason says which.
	EntryHeld EntryOutcome = "held"
)

// Gate limits concurrent downloads fleet-wide (governors). It blocks until
// a slot of the named governor is free or ctx is done; release frees the
// slot and must be called exactly once.
type Gate func(ctx context.Context, governor string) (release func(), err error)

// Record is what the manager remembers about a machine it installed. Only
// machines with a record are ever purged.
type Record struct {
	// Name is the machine name (and directory).
	Name string `json:"name"`
	// Source is where the archive came from (never with credentials).
	Source string `json:"source"`
	// Checksum and VerifyChecksum pin the installed archive and its
	// SHA256SUMS.
	Checksum       string `json:"checksum"`
	VerifyChecksum string `json:"verify_checksum"`
	// Serial is the spec serial that installed it.
	Serial uint64 `json:"serial"`
	// InstalledAt is when the swap completed.
	InstalledAt time.Time `json:"installed_at,omitzero"`
	// Phase is "swapping" while a swap is in progress, else "installed".
	Phase string `json:"phase"`
	// Previous identifies the version kept for rollback, if any.
	Previous *PreviousVersion `json:"previous,omitempty"`
}

// PreviousVersion identifies the version kept next to a machine for
// rollback.
type PreviousVersion struct {
	Checksum       string `json:"checksum"`
	VerifyChecksum string `json:"verify_checksum"`
	Serial         uint64 `json:"serial"`
}

// Record phases.
const (
	PhaseSwapping  = "swapping"
	PhaseInstalled = "installed"
)

var (
	// ErrTampered means an installed machine no longer matches the
	// SHA256SUMS it was installed with.
	ErrTampered = errors.New("installed machine was modified")
	// ErrNotInstalled means the machine has no install record: this agent
	// did not install it, so it never removes or rolls it back.
	ErrNotInstalled = errors.New("machine not installed by this agent")
)
