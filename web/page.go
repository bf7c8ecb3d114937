package web

import (
	"cmp"
	"net/url"
	"slices"
	"time"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/spec"
)

// fleetPage is the whole fleet as the page shows it: fleet.View, each
// node and rollout with the words the CLI prints for it.
type fleetPage struct {
	At time.Time `json:"at"`
	// Error says why there is no view (the status bucket cannot be
	// read); the rest is empty then.
	Error    string        `json:"error,omitempty"`
	Spec     *fleet.Spec   `json:"spec,omitempty"`
	Detail   *specDetail   `json:"spec_detail,omitempty"`
	Counts   fleet.Counts  `json:"counts"`
	Nodes    []pageNode    `json:"nodes"`
	Rollouts []pageRollout `json:"rollouts"`
}

// pageNode is one node: fleet.Node as `mms status --json` prints it, and
// its cells as `mms status` prints them.
type pageNode struct {
	Node     fleet.Node `json:"node"`
	Applied  string     `json:"applied"`
	Seen     string     `json:"seen"`
	Machines string     `json:"machines"`
	Age      string     `json:"age"`
	// Problem: a flag needs an operator's attention (fleet.Flag.Problem).
	Problem bool `json:"problem"`
}

// pageRollout is one rollout: fleet.Rollout as `mms rollout status
// --json` prints it, and its lines as `mms rollout status` prints them.
type pageRollout struct {
	Rollout fleet.Rollout `json:"rollout"`
	// Headline, Versions, Policy and Status are its lines.
	Headline string `json:"headline"`
	Versions string `json:"versions"`
	Policy   string `json:"policy"`
	Status   string `json:"status"`
	// Notes are the lines under the status: failure budget, held and
	// left-out nodes.
	Notes []string `json:"notes"`
	// PauseSeconds is how long until the next wave may start, at the
	// view's time (0 when no pause runs): the page counts it down.
	PauseSeconds float64 `json:"pause_seconds"`
}

// newFleetPage is the page of view.
func newFleetPage(view fleet.View) *fleetPage {
	p := &fleetPage{At: view.At, Spec: &view.Spec, Counts: view.Counts, Nodes: make([]pageNode, len(view.Nodes)), Rollouts: make([]pageRollout, len(view.Rollouts))}
	for i, n := range view.Nodes {
		p.Nodes[i] = newPageNode(n)
	}
	for i := range view.Rollouts {
		r := &view.Rollouts[i]
		p.Rollouts[i] = pageRollout{Rollout: *r, Headline: r.Headline(), Versions: r.VersionsLine(), Policy: r.PolicyLine(),
			Status: r.StatusLine(view.At), Notes: r.Notes(), PauseSeconds: r.Pause(view.At).Seconds()}
	}
	p.Detail = newSpecDetail(view.Spec, view.Nodes, view.At)
	return p
}

// newPageNode is n with its cells.
func newPageNode(n fleet.Node) pageNode {
	return pageNode{Node: n, Applied: n.AppliedCell(), Seen: n.SeenCell(), Machines: n.MachinesCell(), Age: fleet.Age(n.Age), Problem: len(n.Problems()) > 0}
}

// nodePage is one node in full, for the node page.
type nodePage struct {
	At    time.Time   `json:"at"`
	Error string      `json:"error,omitempty"`
	Spec  *fleet.Spec `json:"spec,omitempty"`
	// Node and Detail are the node and what `mms status NODE` prints of it.
	Node   *pageNode     `json:"node,omitempty"`
	Detail *fleet.Detail `json:"detail,omitempty"`
	// Keys are the keys the node trusts, each marked when the live spec
	// claims its signature.
	Keys []nodeKey `json:"keys"`
	// Rollouts are where the node is in each rollout of the live spec.
	Rollouts []nodeRollout `json:"rollouts"`
}

// nodeKey is a key a node trusts.
type nodeKey struct {
	KeyID string `json:"key_id"`
	// Signed: the live spec carries a signature that names this key (not
	// verified here; the node's seen outcome says whether it verified).
	Signed bool `json:"signed"`
}

// nodeRollout is a node's place in one rollout.
type nodeRollout struct {
	Machine string            `json:"machine"`
	Wave    int               `json:"wave"`
	Waves   int               `json:"waves"`
	Node    fleet.RolloutNode `json:"node"`
	// Versions and Status are the rollout's lines.
	Versions string `json:"versions"`
	Status   string `json:"status"`
	Halted   bool   `json:"halted"`
}

// newNodePage is the page of the node called name in view: an identity
// or a status key, as `mms status NODE` takes it.
func newNodePage(view fleet.View, name string) *nodePage {
	p := &nodePage{At: view.At, Spec: &view.Spec, Keys: []nodeKey{}, Rollouts: []nodeRollout{}}
	n, err := fleet.Find(view.Nodes, name)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	pn := newPageNode(n)
	d := n.Detail(view.At)
	p.Node, p.Detail = &pn, &d
	var signed []string
	if op := view.Spec.Opened; op != nil {
		signed = op.KeyIDs
	}
	if n.Doc != nil && n.Doc.Trust != nil {
		for _, id := range n.Doc.Trust.KeyIDs {
			p.Keys = append(p.Keys, nodeKey{KeyID: id, Signed: slices.Contains(signed, id)})
		}
	}
	for i := range view.Rollouts {
		r := &view.Rollouts[i]
		for _, w := range r.Waves {
			for _, rn := range w.Nodes {
				if rn.Identity == n.Identity {
					p.Rollouts = append(p.Rollouts, nodeRollout{Machine: r.Machine, Wave: w.Wave, Waves: len(r.Waves), Node: rn,
						Versions: r.VersionsLine(), Status: r.StatusLine(view.At), Halted: r.Halted})
				}
			}
		}
	}
	return p
}

// specDetail is the live spec decoded, for the spec page. Nothing in it
// is verified: the nodes verify, and their documents say what they did.
type specDetail struct {
	Format   string    `json:"format"`
	Serial   uint64    `json:"serial"`
	Digest   string    `json:"digest"`
	IssuedAt time.Time `json:"issued_at,omitzero"`
	Expires  time.Time `json:"expires,omitzero"`
	// ExpiresIn is how long until Expires at the view's time, negative
	// once it passed (0 without an expiry).
	ExpiresIn float64 `json:"expires_in_seconds,omitempty"`
	// Keys are the keys that signed the spec (as it claims) and the keys
	// the nodes trust, signers first, each with how many nodes trust it.
	Keys []specKey `json:"keys"`
	// Reporting is how many nodes say whom they trust; Unsigned names
	// those that accept any spec.
	Reporting int      `json:"reporting"`
	Unsigned  []string `json:"unsigned"`
	// Thresholds count the nodes by how many trusted signatures they
	// require.
	Thresholds map[int]int `json:"thresholds"`
	// Entries are the spec's entries, without v1 credentials.
	Entries []specEntry `json:"entries"`
}

// specKey is a key that signed the live spec or that a node trusts.
type specKey struct {
	KeyID     string `json:"key_id"`
	Signed    bool   `json:"signed"`
	TrustedBy int    `json:"trusted_by"`
}

// specEntry is one entry of the live spec as the page shows it. A v1
// entry's username and password are never shown, only that it has some.
type specEntry struct {
	Name           string        `json:"name"`
	Source         string        `json:"source"`
	Checksum       string        `json:"checksum"`
	VerifyChecksum string        `json:"verify_checksum,omitempty"`
	Verify         string        `json:"verify,omitempty"`
	Match          string        `json:"match,omitempty"`
	Governor       string        `json:"governor,omitempty"`
	Size           int64         `json:"size,omitempty"`
	Auth           string        `json:"auth,omitempty"`
	Credentials    bool          `json:"credentials,omitempty"`
	Health         *spec.Health  `json:"health,omitempty"`
	Rollout        *spec.Rollout `json:"rollout,omitempty"`
}

// newSpecDetail decodes the live spec s for the page, with the keys the
// nodes trust; nil when there is no live spec.
func newSpecDetail(s fleet.Spec, nodes []fleet.Node, now time.Time) *specDetail {
	if s.State != fleet.SpecLive {
		return nil
	}
	op := s.Opened
	d := &specDetail{Format: op.Format.String(), Serial: op.Spec.Serial, Digest: op.Digest, IssuedAt: op.Spec.IssuedAt, Expires: op.Spec.Expires,
		Keys: []specKey{}, Unsigned: []string{}, Thresholds: map[int]int{}, Entries: make([]specEntry, len(op.Spec.Machines))}
	if !d.Expires.IsZero() {
		d.ExpiresIn = d.Expires.Sub(now).Seconds()
	}
	trusted := map[string]int{}
	for _, n := range nodes {
		if n.Doc == nil || n.Doc.Trust == nil {
			continue
		}
		d.Reporting++
		if n.Doc.Trust.Unsigned {
			d.Unsigned = append(d.Unsigned, n.Identity)
			continue
		}
		d.Thresholds[n.Doc.Trust.Threshold]++
		for _, id := range slices.Compact(slices.Sorted(slices.Values(n.Doc.Trust.KeyIDs))) {
			trusted[id]++
		}
	}
	for _, id := range op.KeyIDs {
		d.Keys = append(d.Keys, specKey{KeyID: id, Signed: true, TrustedBy: trusted[id]})
		delete(trusted, id)
	}
	var others []specKey
	for id, n := range trusted {
		others = append(others, specKey{KeyID: id, TrustedBy: n})
	}
	slices.SortFunc(others, func(a, b specKey) int {
		return cmp.Or(cmp.Compare(b.TrustedBy, a.TrustedBy), cmp.Compare(a.KeyID, b.KeyID))
	})
	d.Keys = append(d.Keys, others...)
	for i, m := range op.Spec.Machines {
		d.Entries[i] = specEntry{Name: m.Name, Source: redactURL(m.Source), Checksum: m.Checksum, VerifyChecksum: m.VerifyChecksum, Verify: m.Verify, Match: m.Match,
			Governor: m.Governor, Size: m.Size, Auth: m.Auth, Credentials: m.Username != "" || m.Password != "", Health: m.Health, Rollout: m.Rollout}
	}
	return d
}

// redactURL hides the password of a URL with one ("https://u:xxxxx@…");
// anything else is returned as it is.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
