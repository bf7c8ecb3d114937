package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// The flags a node can carry, in the order a node lists them.
const (
	// FlagForged: the document under the node's key claims another
	// identity (see nodestatus.Read); it is the only flag such a node
	// gets, since what the document says is nobody's.
	FlagForged = "forged"
	// FlagInvalid: the document cannot be read.
	FlagInvalid = "invalid"
	// FlagRejected: the last spec the node saw was not applied.
	FlagRejected = "rejected"
	// FlagFailed: an entry failed, was rolled back, failed its health
	// gate, or is held by a rollout that halted.
	FlagFailed = "failed"
	// FlagExpired: the applied spec has expired.
	FlagExpired = "expired"
	// FlagBehind: the node runs an older spec than the live one, or none.
	FlagBehind = "behind"
	// FlagError: a machine has an error.
	FlagError = "error"
	// FlagStale: no update for three heartbeats (or Options.StaleAfter).
	FlagStale = "stale"
	// FlagStopped: the agent shut down cleanly.
	FlagStopped = "stopped"
	// FlagNATS: the server denied the agent something. Not a problem of
	// the node by itself (see [Flag.Problem]).
	FlagNATS = "nats"
)

// Flag is one flag of a node and what earned it, in one line.
type Flag struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
}

// Problem reports whether the flag needs an operator's attention (what
// `mms status --check` fails on): every flag but nats.
func (f Flag) Problem() bool { return f.Name != FlagNATS }

// Node is one status document as an operator sees it. It encodes to JSON
// as its document with the view's fields added (see MarshalJSON).
type Node struct {
	// Key is the document's key in the status bucket.
	Key string
	// Identity is the document's identity; the key when the document
	// cannot be read.
	Identity string
	// Doc is the document, nil when it cannot be read (Err says why).
	Doc *nodestatus.Document
	Err error
	// Flags are what needs attention, in the order the Flag… constants
	// are listed.
	Flags []Flag
	// Message is the node's first problem in one line: the first its
	// document states, else the first flag's detail; "" when none.
	Message string
	// Age is how long ago the document was written (0 when unreadable).
	Age time.Duration
}

// Problems returns "flag: detail" for each flag that needs attention.
func (n Node) Problems() []string {
	var out []string
	for _, f := range n.Flags {
		if f.Problem() {
			out = append(out, f.Name+": "+f.Detail)
		}
	}
	return out
}

// FlagNames returns the names of the node's flags.
func (n Node) FlagNames() []string {
	out := make([]string, len(n.Flags))
	for i, f := range n.Flags {
		out[i] = f.Name
	}
	return out
}

// MarshalJSON encodes a readable node as its document with "key",
// "flags", "message" and "age_seconds" added, so a consumer of the plain
// documents reads it unchanged; an unreadable one as its key, flags and
// message.
func (n Node) MarshalJSON() ([]byte, error) {
	flags := n.Flags
	if flags == nil {
		flags = []Flag{}
	}
	extra := struct {
		Key        string  `json:"key"`
		Flags      []Flag  `json:"flags"`
		Message    string  `json:"message"`
		AgeSeconds float64 `json:"age_seconds"`
	}{n.Key, flags, n.Message, n.Age.Seconds()}
	if n.Doc == nil {
		return json.Marshal(extra)
	}
	doc, err := json.Marshal(n.Doc)
	if err != nil {
		return nil, fmt.Errorf("encode the status document of %s: %w", n.Key, err)
	}
	more, err := json.Marshal(extra)
	if err != nil {
		return nil, fmt.Errorf("encode the flags of %s: %w", n.Key, err)
	}
	// Both are JSON objects: splice the fields of the second into the first.
	return append(append(doc[:len(doc)-1:len(doc)-1], ','), more[1:]...), nil
}

// Nodes returns every node at now, sorted by identity.
func (t *Tracker) Nodes(now time.Time) []Node {
	recs := t.records()
	out := make([]Node, len(recs))
	for i, r := range recs {
		out[i] = t.node(r, now)
	}
	return out
}

// node is one record as a Node at now.
func (t *Tracker) node(r *record, now time.Time) Node {
	n := Node{Key: r.key, Identity: r.name(), Doc: r.doc, Err: r.err}
	n.Flags = nodeFlags(r, now, &t.spec, t.o.StaleAfter)
	if r.doc != nil {
		n.Age = now.Sub(r.doc.UpdatedAt)
		if p := r.doc.Problems(); len(p) > 0 {
			n.Message = p[0]
		}
	}
	if n.Message == "" && len(n.Flags) > 0 {
		n.Message = n.Flags[0].Detail
	}
	return n
}

// Find returns the node of nodes called name: an identity, or a status
// key (or the key of that identity).
func Find(nodes []Node, name string) (Node, error) {
	for _, n := range nodes {
		if n.Doc != nil && n.Doc.Identity == name {
			return n, nil
		}
	}
	key := nodestatus.Key(name)
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n.Key == name || n.Key == key {
			return n, nil
		}
		names = append(names, n.Identity)
	}
	if len(names) == 0 {
		return Node{}, fmt.Errorf("no status document for %q in %s: no agent has written one yet", name, nodestatus.Bucket)
	}
	return Node{}, &NotFoundError{Name: name, Reporting: names}
}

// NotFoundError is [Find]'s error for a name no document has.
type NotFoundError struct {
	// Name is the name looked for.
	Name string
	// Reporting are the identities (or keys) of the documents there are.
	Reporting []string
}

// Error names the name looked for and the agents that report.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no status document for %q in %s; agents that report: %s", e.Name, nodestatus.Bucket, strings.Join(e.Reporting, ", "))
}

// Counts count nodes by flag.
type Counts struct {
	// Nodes is every node, readable or not.
	Nodes int `json:"nodes"`
	// Clean is the nodes without a flag.
	Clean int `json:"clean"`
	// Problems is the nodes with a flag that needs attention.
	Problems int `json:"problems"`
	// Flags is, per flag name, the nodes that carry it.
	Flags map[string]int `json:"flags"`
}

// CountNodes counts nodes by flag.
func CountNodes(nodes []Node) Counts {
	c := Counts{Nodes: len(nodes), Flags: map[string]int{}}
	for _, n := range nodes {
		if len(n.Flags) == 0 {
			c.Clean++
		}
		if len(n.Problems()) > 0 {
			c.Problems++
		}
		for _, f := range n.Flags {
			c.Flags[f.Name]++
		}
	}
	return c
}

// nodeFlags returns the flags of one record at now: what its document
// says is wrong, how it compares with the live spec cur, and whether it
// is still writing.
func nodeFlags(r *record, now time.Time, cur *Spec, staleAfter time.Duration) []Flag {
	d := r.doc
	if f, ok := errors.AsType[*nodestatus.ForgedError](r.err); ok {
		return []Flag{{FlagForged, f.Error()}}
	}
	if d == nil {
		detail := "the document cannot be read"
		if r.err != nil {
			detail = r.err.Error()
		}
		return []Flag{{FlagInvalid, detail}}
	}
	var flags []Flag
	if s := d.Seen; s.Refused() {
		flags = append(flags, Flag{FlagRejected, s.Problem()})
	}
	if failed := failedProblems(d); failed != "" {
		flags = append(flags, Flag{FlagFailed, failed})
	}
	if d.Applied != nil && d.Applied.Stale {
		flags = append(flags, Flag{FlagExpired, "applied spec " + d.Applied.Label() + " has expired; publish a new one"})
	}
	if cur.State == SpecLive && behind(d.Applied, cur.Opened) {
		flags = append(flags, Flag{FlagBehind, behindDetail(d, cur)})
	}
	if errs := d.MachineErrors(); len(errs) > 0 {
		flags = append(flags, Flag{FlagError, strings.Join(errs, "; ")})
	}
	if !d.StoppedAt.IsZero() {
		flags = append(flags, Flag{FlagStopped, "the agent stopped " + Age(now.Sub(d.StoppedAt)) + " ago"})
	} else if limit := d.StaleAfter(staleAfter); d.Stale(now, staleAfter) {
		flags = append(flags, Flag{FlagStale, fmt.Sprintf("no update for %s (limit %s): the agent stopped or lost NATS", Age(now.Sub(d.UpdatedAt)), limit)})
	}
	if v := d.NATS.PermissionViolations; len(v) > 0 {
		flags = append(flags, Flag{FlagNATS, "the server denied: " + v[len(v)-1].Message})
	}
	return flags
}

// behindDetail says what a node behind the current spec cur runs, and
// what it is applying when a pass for cur is under way: "runs serial 11,
// the current spec is serial 12", "never applied a spec, applying serial
// 12: web downloading: 2.0 MiB of 8.0 MiB (25%)".
func behindDetail(d *nodestatus.Document, cur *Spec) string {
	runs := "never applied a spec"
	if d.Applied != nil {
		runs = "runs " + d.Applied.Label()
	}
	s := d.Seen
	if s == nil || s.Outcome != nodestatus.SeenApplying || s.Digest != cur.Opened.Digest {
		return runs + ", the current spec is " + cur.Label()
	}
	var downloads []string
	for _, e := range d.Entries {
		if e.Download != nil {
			downloads = append(downloads, e.Name+" "+DownloadLine(e.Download))
		}
	}
	detail := runs + ", applying " + s.Label()
	if len(downloads) > 0 {
		detail += ": " + strings.Join(downloads, ", ")
	}
	return detail
}

// failedProblems says what became of each failed entry of d (see
// nodestatus.Document.Failed), "; "-separated, or "" when none failed.
func failedProblems(d *nodestatus.Document) string {
	failed := d.Failed()
	parts := make([]string, len(failed))
	for i, e := range failed {
		parts[i] = e.Problem()
	}
	return strings.Join(parts, "; ")
}

// behind reports whether a node running applied (nil: none) runs an older
// spec than cur: a lower serial for v2, another digest (or none) for v1.
func behind(applied *nodestatus.Applied, cur *packer.Opened) bool {
	if applied == nil {
		return true
	}
	if cur.Format == packer.FormatV1 {
		return applied.Digest != cur.Digest
	}
	return applied.Serial < cur.Spec.Serial
}
