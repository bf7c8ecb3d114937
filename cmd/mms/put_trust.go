package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// maxNamed caps how many agents a warning or an error names.
const maxNamed = 10

// warnUntrusted warns, before the write, about the agents that report
// their trust in their status documents and will reject next: all of them
// (no reporting agent trusts a key the spec claims to be signed by), or
// some. The key ids are claims (the spec is not verified here); nothing is
// refused, and when the status documents cannot be read it says nothing.
func (a *app) warnUntrusted(ctx context.Context, nc natsConn, next *packer.Opened) {
	js, err := nc.JetStream()
	if err != nil {
		return
	}
	t, err := fleet.Read(ctx, js, fleet.Options{StatusOnly: true})
	if err != nil {
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			a.log.Debug("cannot read the agents' trust; not checking it", "error", err)
		}
		return
	}
	var reporting int
	var refusing []string
	trusted := map[string]bool{}
	for _, n := range t.Nodes(time.Now()) {
		d := n.Doc
		if d == nil || d.Trust == nil || !d.StoppedAt.IsZero() {
			continue
		}
		reporting++
		for _, id := range d.Trust.KeyIDs {
			trusted[id] = true
		}
		if why := wouldRefuse(d, next); why != "" {
			refusing = append(refusing, termtext.Escape(d.Identity)+" ("+why+")")
		}
	}
	if len(refusing) == 0 {
		return
	}
	signed := "no key id (v1)"
	if len(next.KeyIDs) > 0 {
		signed = termtext.Escape(strings.Join(next.KeyIDs, ", "))
	}
	if len(refusing) == reporting && next.Format == packer.FormatV2 && !slices.ContainsFunc(next.KeyIDs, func(id string) bool { return trusted[id] }) {
		ids := make([]string, 0, len(trusted))
		for id := range trusted {
			ids = append(ids, termtext.Escape(id))
		}
		slices.Sort(ids)
		fmt.Fprintf(a.stderr, "warning: no reporting agent trusts a key this spec claims to be signed by (%s); the %d agent%s trust %s: all will reject it\n",
			signed, reporting, plural(reporting), strings.Join(ids, ", "))
		return
	}
	fmt.Fprintf(a.stderr, "warning: %d of %d reporting agents will reject this spec (signed by %s): %s\n",
		len(refusing), reporting, signed, strings.Join(capList(refusing, maxNamed), ", "))
}

// wouldRefuse says why the agent of d will reject next, as far as its
// status document tells (its trust and the spec it runs), or "".
func wouldRefuse(d *nodestatus.Document, next *packer.Opened) string {
	t := d.Trust
	if t.Unsigned {
		return ""
	}
	if next.Format == packer.FormatV1 {
		switch {
		case !t.AllowV1:
			return "refuses v1 specs"
		case d.Applied != nil && d.Applied.Format == packer.FormatV2.String():
			return "runs a v2 spec, after which it refuses v1"
		}
		return ""
	}
	signers := 0
	for _, id := range next.KeyIDs {
		if slices.Contains(t.KeyIDs, id) {
			signers++
		}
	}
	switch {
	case signers == 0:
		return "trusts none of its signing keys"
	case signers < t.Threshold:
		return fmt.Sprintf("needs %d signatures from its keys, the spec has %d", t.Threshold, signers)
	}
	return ""
}

// capList returns list, its tail replaced by "and N more" beyond n.
func capList(list []string, n int) []string {
	if len(list) <= n {
		return list
	}
	return append(slices.Clone(list[:n]), fmt.Sprintf("and %d more", len(list)-n))
}
