package nodestatus

import (
	"fmt"
	"time"
)

// ForgedError is [Read]'s error for a document whose identity is not the
// identity of the key it lives under: a node (which may write only its own
// key) speaking for another node, or for one that does not exist. Readers
// that act on documents ignore it; `mms status` shows it, flagged.
type ForgedError struct {
	// Key is the key the document was read from.
	Key string
	// KeyIdentity is the identity that key belongs to ([IdentityOf]), ""
	// when it is nobody's key.
	KeyIdentity string
	// Claimed is the identity the document claims.
	Claimed string
	// Doc is the document (clamped like any other), for display only.
	Doc *Document
}

// Error says which key claims which identity, the way `mms status` flags
// it: "key web1 claims identity web2".
func (e *ForgedError) Error() string {
	if e.KeyIdentity == "" {
		return fmt.Sprintf("key %s belongs to no identity but claims identity %s", e.Key, e.Claimed)
	}
	return fmt.Sprintf("key %s claims identity %s", e.Key, e.Claimed)
}

// Read decodes the document stored under key, as a reader at now sees it:
// [ParseDocument], then
//
//   - the identity is the key's: a document that claims another identity
//     (or lives under a key that is no identity's) is a *[ForgedError];
//   - no time in it is later than the moment the server stored it
//     (written, the KV entry's creation time; zero when unknown) or than
//     now: a time from the future is clamped (see [Document.Clamp]), so a
//     document cannot stay fresh, or healthy since a time to come, by
//     claiming a clock ahead of everyone's.
func Read(key string, data []byte, written, now time.Time) (*Document, error) {
	d, err := ParseDocument(data)
	if err != nil {
		return nil, err
	}
	limit := now
	if !written.IsZero() && written.Before(limit) {
		limit = written
	}
	d.Clamp(limit)
	id, err := IdentityOf(key)
	if err != nil {
		return nil, &ForgedError{Key: key, Claimed: d.Identity, Doc: d}
	}
	if id != d.Identity {
		return nil, &ForgedError{Key: key, KeyIdentity: id, Claimed: d.Identity, Doc: d}
	}
	return d, nil
}

// Clamp sets every time in d that is later than limit to limit: when the
// agent started, stopped, wrote it, last failed, accepted and saw its spec,
// when each entry became healthy and its download progressed, and the
// times of its NATS connection.
func (d *Document) Clamp(limit time.Time) {
	clamp := func(ts ...*time.Time) {
		for _, t := range ts {
			if t.After(limit) {
				*t = limit
			}
		}
	}
	clamp(&d.StartedAt, &d.UpdatedAt, &d.StoppedAt, &d.LastErrorAt,
		&d.NATS.ConnectedAt, &d.NATS.DisconnectedAt, &d.NATS.LastErrorAt)
	for i := range d.NATS.PermissionViolations {
		clamp(&d.NATS.PermissionViolations[i].First, &d.NATS.PermissionViolations[i].Last)
	}
	if d.Applied != nil {
		clamp(&d.Applied.AcceptedAt)
	}
	if d.Seen != nil {
		clamp(&d.Seen.At)
	}
	for i := range d.Entries {
		clamp(&d.Entries[i].HealthyAt)
		if p := d.Entries[i].Download; p != nil {
			clamp(&p.StartedAt, &p.UpdatedAt)
		}
	}
}
