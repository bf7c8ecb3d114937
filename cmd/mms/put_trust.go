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

// checkAgentsAccept reads, before the write, the trust the agents report
// in their status documents and finds those that will reject next. When
// every reporting agent will, it refuses the put unless force (then it
// warns); when some will, it warns. The key ids are claims (the spec is not
// verified here); when the status documents cannot be read it says
// nothing.
func (a *app) checkAgentsAccept(ctx context.Context, nc natsConn, next *packer.Opened, force bool) error {
	js, err := nc.JetStream()
	if err != nil {
		return nil
	}
	t, err := fleet.Read(ctx, js, fleet.Options{StatusOnly: true})
	if err != nil {
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			a.log.Debug("cannot read the agents' trust; not checking it", "error", err)
		}
		return nil
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
		return nil
	}
	signed := "no key id (v1)"
	if len(next.KeyIDs) > 0 {
		signed = termtext.Escape(strings.Join(next.KeyIDs, ", "))
	}
	if len(refusing) < reporting {
		fmt.Fprintf(a.stderr, "warning: %d of %d reporting agents will reject this spec (signed by %s): %s\n",
			len(refusing), reporting, signed, strings.Join(capList(refusing, maxNamed), ", "))
		return nil
	}
	var why string
	if next.Format == packer.FormatV2 && !slices.ContainsFunc(next.KeyIDs, func(id string) bool { return trusted[id] }) {
		ids := make([]string, 0, len(trusted))
		for id := range trusted {
			ids = append(ids, termtext.Escape(id))
		}
		slices.Sort(ids)
		agents := fmt.Sprintf("the %d agents trust", reporting)
		if reporting == 1 {
			agents = "the one agent trusts"
		}
		why = fmt.Sprintf("no reporting agent trusts a key this spec claims to be signed by (%s); %s %s: all will reject it",
			signed, agents, strings.Join(ids, ", "))
	} else {
		why = fmt.Sprintf("every reporting agent will reject this spec (signed by %s): %s", signed, strings.Join(capList(refusing, maxNamed), ", "))
	}
	if force {
		fmt.Fprintf(a.stderr, "warning: %s; publishing it anyway (--force)\n", why)
		return nil
	}
	return fmt.Errorf("refusing to put: %s; sign it so that they accept it, or pass --force to publish it anyway", why)
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
