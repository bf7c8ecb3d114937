package nodestatus

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/spec"
)

// MaxWrittenSize bounds the status document an agent writes: half of
// [MaxDocumentSize] (the server's default max_payload), so a document
// always fits whatever the spec. A document that would be larger is
// trimmed rather than refused (a refused write would leave the node stale
// for as long as the spec stays), in this order, until it fits, and its
// "trimmed" field says what went:
//
//  1. every free text (entry reasons and matchers, machine errors, the
//     last error, the seen spec's reason) is cut to [TrimmedTextSize]
//     bytes;
//  2. matchers and machine paths are left out;
//  3. skipped entries are left out (a rollout counts a node that skips an
//     entry as not selected, as it does for an entry it does not list);
//  4. machines without an error are left out;
//  5. entries are left out from the end.
const MaxWrittenSize = MaxDocumentSize / 2

// TrimmedTextSize is what a free text of a trimmed document keeps, in
// bytes (see [MaxWrittenSize]).
const TrimmedTextSize = 256

// fit encodes d within limit bytes, trimming it as [MaxWrittenSize] says.
func fit(d Document, limit int) ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil || len(b) <= limit {
		return b, err
	}
	var notes []string
	try := func(note string) ([]byte, bool) {
		notes = append(notes, note)
		return encodeTrimmed(&d, limit, notes)
	}
	d.Entries, d.Machines = slices.Clone(d.Entries), slices.Clone(d.Machines)
	if d.Seen != nil {
		seen := *d.Seen
		seen.Reason = cut(seen.Reason)
		d.Seen = &seen
	}
	d.LastError = cut(d.LastError)
	for i := range d.Entries {
		d.Entries[i].Reason, d.Entries[i].Match = cut(d.Entries[i].Reason), cut(d.Entries[i].Match)
	}
	for i := range d.Machines {
		d.Machines[i].LastError = cut(d.Machines[i].LastError)
	}
	if b, ok := try(fmt.Sprintf("reasons, matchers and errors cut to %d bytes", TrimmedTextSize)); ok {
		return b, nil
	}
	for i := range d.Entries {
		d.Entries[i].Match = ""
	}
	for i := range d.Machines {
		d.Machines[i].Path = ""
	}
	if b, ok := try("matchers and machine paths left out"); ok {
		return b, nil
	}
	n := len(d.Entries)
	d.Entries = slices.DeleteFunc(d.Entries, func(e Entry) bool { return e.Outcome == string(manager.EntrySkipped) })
	if b, ok := try(fmt.Sprintf("%d skipped entries left out", n-len(d.Entries))); ok {
		return b, nil
	}
	n = len(d.Machines)
	d.Machines = slices.DeleteFunc(d.Machines, func(m Machine) bool { return m.LastError == "" && m.State != "" })
	if b, ok := try(fmt.Sprintf("%d machines without an error left out", n-len(d.Machines))); ok {
		return b, nil
	}
	// Entries from the end: the most that fit, by bisection (all of them
	// do not).
	all := d.Entries
	keep := func(k int) ([]byte, bool) {
		d.Entries = all[:k]
		return encodeTrimmed(&d, limit, append(notes, fmt.Sprintf("the last %d entries left out", len(all)-k)))
	}
	if _, ok := keep(0); !ok {
		return nil, fmt.Errorf("status document: more than %d bytes even without entries", limit)
	}
	lo, hi := 0, len(all)
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; func() bool { _, ok := keep(mid); return ok }() {
			lo = mid
		} else {
			hi = mid
		}
	}
	b, _ = keep(lo)
	return b, nil
}

// encodeTrimmed sets d's trimmed note from notes and encodes it,
// reporting whether it fits limit.
func encodeTrimmed(d *Document, limit int, notes []string) ([]byte, bool) {
	d.Trimmed = fmt.Sprintf("this document was trimmed to fit %d bytes: %s", limit, strings.Join(notes, "; "))
	b, err := json.Marshal(d)
	return b, err == nil && len(b) <= limit
}

// cut shortens s to TrimmedTextSize bytes, at a character boundary, with
// "…" at the end.
func cut(s string) string {
	if len(s) <= TrimmedTextSize {
		return s
	}
	i := TrimmedTextSize - len("…")
	for i > 0 && !utf8Start(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// utf8Start reports whether b starts a UTF-8 sequence (or is ASCII).
func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// EstimateSize is about how large the status document of a node that
// installed every one of machines would be, untrimmed: one entry and one
// machine each, with its matcher, checksums and a version. `mms pack`
// warns when it approaches [MaxWrittenSize].
func EstimateSize(machines []spec.Machine) int {
	d := Document{Version: DocumentVersion, Identity: strings.Repeat("x", 32), Heartbeat: DefaultHeartbeat.String(),
		Seen: &Seen{Outcome: SeenApplied, Digest: strings.Repeat("0", 64)}, Applied: &Applied{Digest: strings.Repeat("0", 64), Format: "v2"},
		Entries: make([]Entry, len(machines)), Machines: make([]Machine, len(machines))}
	for i, m := range machines {
		d.Entries[i] = Entry{Name: m.Name, Outcome: string(manager.EntryInstalled), Version: "1.0.0", Checksum: m.Checksum, Match: m.Match, Installed: m.Checksum}
		d.Machines[i] = Machine{Name: m.Name, Version: "1.0.0", State: "RUNNING", Path: "/var/lib/mms/machines/" + m.Name, Checksum: m.Checksum, LastOutcome: string(manager.EntryInstalled)}
	}
	b, _ := json.Marshal(d) // a Document always encodes
	return len(b)
}
