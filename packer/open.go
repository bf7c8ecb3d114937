package packer

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mms-io/mms/spec"
)

// DefaultMaxClockSkew is how far in the future a spec's issued_at may be
// when OpenOptions.MaxClockSkew is zero.
const DefaultMaxClockSkew = 5 * time.Minute

// OpenOptions say which specs Open accepts.
type OpenOptions struct {
	// Trusted are the public keys whose signatures count. Each key counts
	// once, however many signatures it made.
	Trusted []ed25519.PublicKey
	// Threshold is how many distinct trusted keys must have signed; 0 means 1.
	Threshold int
	// AllowV1 accepts v1 (Choria) envelopes, which have no serial or expiry
	// and therefore no replay protection between two v1 specs.
	AllowV1 bool
	// AllowUnsigned is the insecure mode: accept a spec whatever its
	// signatures. KeyIDs still lists the trusted keys that signed it.
	AllowUnsigned bool
	// Ledger holds the last accepted spec and enables the replay rules; nil
	// applies none (for `mms verify`, which acts on nothing).
	Ledger Ledger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// MaxClockSkew is how far in the future issued_at may be; 0 means
	// DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// Open verifies an envelope and returns the spec it carries, or an error that
// matches one of the Err* sentinels (ErrMalformed, ErrLegacyRefused,
// ErrUnsigned, ErrBadSignature, ErrUnknownKey, ErrBelowThreshold,
// ErrReplayed, ErrEquivocation, ErrNotYetValid, ErrExpired, ErrSerialAhead)
// or, for a bad
// OpenOptions or a failing Ledger, a plain error.
//
// The steps, in order: trim surrounding whitespace; refuse more than
// MaxEnvelopeSize bytes; detect the format and decode the envelope strictly;
// refuse v1 unless AllowV1; verify the signatures over the exact decoded
// bytes and count distinct trusted keys against the threshold; only then
// decode the payload strictly; apply the replay rules against the Ledger;
// and record a new spec with Ledger.Accept before returning it, so the caller
// only ever acts on a recorded spec.
//
// Replay rules, when a Ledger is set and holds a spec: a lower serial is
// ErrReplayed; the same serial with another digest is ErrEquivocation; the
// same serial and digest returns Unchanged (and Stale when it has expired:
// keep running it) without error or write. A new spec issued more than
// MaxClockSkew in the future is ErrNotYetValid, one whose expiry has
// passed is ErrExpired, and one whose serial is above spec.SerialCeiling
// (the current Unix time plus spec.MaxSerialAhead) is ErrSerialAhead. v1
// specs have serial 0: after a v2 spec was accepted a v1 spec is
// ErrReplayed, and one v1 spec may replace another freely.
//
// Recovery from a bad high serial: a spec with spec.Spec.ResetHistory set
// (`mms pack --reset-history`) that the replay rules would refuse as older
// is accepted anyway when the last accepted serial is above the serial
// ceiling (it can only have been accepted by an agent without this check,
// or with a wrong clock) and the reset spec was issued after that serial
// was accepted (less MaxClockSkew). Opened.Reset then names the forgotten
// record. Everywhere else a reset spec is a normal spec. (The operator's
// local alternative is FileLedger.Reset.)
//
// Open does not validate the entries (names, sources, checksums, matchers):
// call spec.Validate on the result. Calls sharing a Ledger must not run
// concurrently (FileLedger refuses a lost race, but the loser sees an error).
func Open(data []byte, opts OpenOptions) (*Opened, error) {
	trusted, threshold, err := opts.trustedKeys()
	if err != nil {
		return nil, fmt.Errorf("opening spec: %w", err)
	}
	sealed, err := decodeEnvelope(data)
	if err != nil {
		return nil, err
	}
	if sealed.format == FormatV1 && !opts.AllowV1 {
		return nil, reject(ErrLegacyRefused, "v1 spec refused: v1 envelopes have no serial or expiry, so no replay protection, and v1 is not allowed")
	}
	keyIDs, err := verifySignatures(sealed, trusted, threshold)
	if err != nil && !opts.AllowUnsigned {
		return nil, err
	}
	s, err := decodePayload(sealed)
	if err != nil {
		return nil, err
	}
	opened := &Opened{
		Format:     sealed.format,
		Spec:       s,
		KeyIDs:     keyIDs,
		Digest:     sealed.digest(),
		Compressed: sealed.compressed,
	}
	if err := opts.applyReplayRules(opened, sealed); err != nil {
		return nil, err
	}
	return opened, nil
}

// ErrThreshold is wrapped by the error [OpenOptions.Validate] returns for a
// threshold that is negative or above the distinct trusted keys.
var ErrThreshold = errors.New("threshold")

// Validate reports whether the options can accept any spec: every trusted
// key is an ed25519 public key, no two distinct keys share a key id, and,
// unless AllowUnsigned, at least one key is trusted and Threshold is
// between 0 and the number of distinct keys (a threshold error wraps
// [ErrThreshold]). [Open] applies it first. It is the one place these
// bounds are checked: the manager builds its trust settings through it.
func (o *OpenOptions) Validate() error {
	_, _, err := o.trustedKeys()
	return err
}

// trustedKeys indexes the trusted keys by KeyID and resolves the threshold.
func (o *OpenOptions) trustedKeys() (map[string]ed25519.PublicKey, int, error) {
	trusted := make(map[string]ed25519.PublicKey, len(o.Trusted))
	for i, k := range o.Trusted {
		if len(k) != ed25519.PublicKeySize {
			return nil, 0, fmt.Errorf("trusted key %d is %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
		id := KeyID(k)
		if prev, ok := trusted[id]; ok && !prev.Equal(k) {
			return nil, 0, fmt.Errorf("trusted key %d has keyid %s, like another trusted key", i, id)
		}
		trusted[id] = k
	}
	threshold := o.Threshold
	switch {
	case threshold < 0:
		return nil, 0, fmt.Errorf("%w %d is negative", ErrThreshold, threshold)
	case threshold == 0:
		threshold = 1
	}
	if o.AllowUnsigned {
		return trusted, threshold, nil
	}
	if len(trusted) == 0 {
		return nil, 0, errors.New("no trusted keys configured")
	}
	if threshold > len(trusted) {
		noun := "keys"
		if len(trusted) == 1 {
			noun = "key"
		}
		return nil, 0, fmt.Errorf("%w %d exceeds the %d distinct trusted %s", ErrThreshold, threshold, len(trusted), noun)
	}
	return trusted, threshold, nil
}

// verifySignatures counts the distinct trusted keys whose signature verifies
// over the sealed message and returns their sorted ids, or a rejection when
// fewer than threshold did. The ids are returned with the rejection too.
func verifySignatures(sealed *sealedSpec, trusted map[string]ed25519.PublicKey, threshold int) ([]string, error) {
	valid := make(map[string]bool)
	var problems []string
	var bad bool
	note := func(p string) {
		if !slices.Contains(problems, p) {
			problems = append(problems, p)
		}
	}
	for _, sg := range sealed.sigs {
		if sg.keyID == "" { // v1: the signature names no key, try each.
			matched := false
			for _, id := range slices.Sorted(maps.Keys(trusted)) {
				if ed25519.Verify(trusted[id], sealed.message, sg.sig) {
					valid[id], matched = true, true
					break
				}
			}
			if !matched {
				bad = true
				note(fmt.Sprintf("v1 signature verifies with none of the %d trusted keys", len(trusted)))
			}
			continue
		}
		key, ok := trusted[sg.keyID]
		switch {
		case !ok:
			note(fmt.Sprintf("keyid %s not trusted", sg.keyID))
		case !ed25519.Verify(key, sealed.message, sg.sig):
			bad = true
			note(fmt.Sprintf("keyid %s: signature does not verify", sg.keyID))
		case valid[sg.keyID]:
			note(fmt.Sprintf("keyid %s signed more than once, counted once", sg.keyID))
		default:
			valid[sg.keyID] = true
		}
	}
	ids := slices.Sorted(maps.Keys(valid))
	if len(ids) >= threshold {
		return ids, nil
	}
	kind := ErrBelowThreshold
	switch {
	case len(sealed.sigs) == 0:
		kind = ErrUnsigned
		note("envelope is unsigned")
	case bad:
		kind = ErrBadSignature
	case len(ids) == 0:
		kind = ErrUnknownKey
	}
	if len(problems) == 0 {
		note("no other trusted key signed")
	}
	return ids, reject(kind, "spec rejected: %d/%d valid signatures (%s)", len(ids), threshold, strings.Join(problems, "; "))
}

// applyReplayRules checks the opened spec against the ledger's last record and
// the clock, and records it when it is new.
func (o *OpenOptions) applyReplayRules(opened *Opened, sealed *sealedSpec) error {
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	skew := o.MaxClockSkew
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	s := opened.Spec
	expired := !s.Expires.IsZero() && !now.Before(s.Expires)
	var reset *HistoryReset
	if o.Ledger != nil {
		last, ok, err := o.Ledger.Last()
		if err != nil {
			return fmt.Errorf("opening spec: reading replay ledger: %w", err)
		}
		if ok {
			unchanged, err := checkReplay(last, opened.Format, s.Serial, opened.Digest)
			switch {
			case unchanged:
				opened.Unchanged, opened.Stale = true, expired
				return nil
			case err != nil && resetsHistory(last, opened, now, skew):
				reset = &HistoryReset{FromSerial: last.Serial, FromDigest: last.Digest, Reason: "signed reset spec"}
			case err != nil && s.ResetHistory && errors.Is(err, ErrReplayed):
				return reject(ErrReplayed, "%s; it is a reset spec, but a reset only replaces a last serial above the current ceiling (%d) and only with a spec issued after that serial was accepted (%s)",
					err, spec.SerialCeiling(now), last.AcceptedAt.UTC().Format(time.RFC3339))
			case err != nil:
				return err
			}
		}
	}
	if ahead := s.IssuedAt.Sub(now); !s.IssuedAt.IsZero() && ahead > skew {
		return reject(ErrNotYetValid, "spec not valid yet (issued %s in the future, allowed clock skew %s)", ahead.Round(time.Second), skew)
	}
	if expired {
		return reject(ErrExpired, "spec expired %s ago", now.Sub(s.Expires).Round(time.Second))
	}
	if err := spec.CheckSerial(s.Serial, now); err != nil {
		return reject(ErrSerialAhead, "spec refused: serial %d is above %d, the current Unix time plus %s (milliseconds instead of seconds?): accepting it would make this node ignore every lower serial",
			s.Serial, spec.SerialCeiling(now), spec.MaxSerialAhead)
	}
	if o.Ledger == nil {
		return nil
	}
	rec := Record{Serial: s.Serial, Digest: opened.Digest, Format: opened.Format, AcceptedAt: now, Reset: reset}
	if opened.Format == FormatV2 {
		rec.Envelope = bytes.Clone(sealed.envelope)
	}
	if err := o.Ledger.Accept(rec); err != nil {
		return fmt.Errorf("opening spec: recording accepted spec: %w", err)
	}
	opened.Reset = reset
	return nil
}

// resetsHistory reports whether opened, which the replay rules refuse
// against last, is a reset spec that replaces last anyway: it says so
// (spec.Spec.ResetHistory, v2), last's serial is above the serial ceiling
// at now, so last can only have been accepted by an agent without the
// ceiling check or with a wrong clock, and opened was issued after last was
// accepted (within the clock skew), so a reset spec kept from an earlier
// incident cannot undo a later history. A node whose last serial is
// plausible treats a reset spec as any other spec.
func resetsHistory(last Record, opened *Opened, now time.Time, skew time.Duration) bool {
	s := opened.Spec
	return s.ResetHistory && opened.Format == FormatV2 &&
		last.Serial > spec.SerialCeiling(now) &&
		!s.IssuedAt.Before(last.AcceptedAt.Add(-skew))
}

// checkReplay compares a spec (format, serial, digest) with the last accepted
// record. It reports unchanged for the same serial and digest, and an
// ErrReplayed or ErrEquivocation rejection for an older serial or a reused
// one. v1 specs all have serial 0, so a v1 spec after a v1 spec is new.
func checkReplay(last Record, f Format, serial uint64, digest string) (unchanged bool, err error) {
	switch {
	case serial < last.Serial && f == FormatV1:
		return false, reject(ErrReplayed, "ignored older spec (serial %d < %d; v1 specs have no serial)", serial, last.Serial)
	case serial < last.Serial:
		return false, reject(ErrReplayed, "ignored older spec (serial %d < %d)", serial, last.Serial)
	case serial == last.Serial && digest == last.Digest:
		return true, nil
	case serial == last.Serial && f == FormatV2:
		return false, reject(ErrEquivocation, "serial %d reused with different content", serial)
	}
	return false, nil
}
