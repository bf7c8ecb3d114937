package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// waitState is where one agent is with the spec `put --wait` follows.
type waitState int

const (
	waitPending    waitState = iota // not there yet
	waitApplied                     // runs it, every entry fine
	waitFailed                      // rejected it, failed an entry or stopped
	waitSuperseded                  // runs a newer spec already
)

// nodeWait is one agent `put --wait` waits for.
type nodeWait struct {
	identity string
	state    waitState
	detail   string // why it failed, or where it is
}

// judge says where the agent of d is with next.
func judge(d *nodestatus.Document, next *packer.Opened) (waitState, string) {
	if a := d.Applied; a != nil && a.Digest == next.Digest {
		if failed := failedProblems(d); failed != "" {
			return waitFailed, failed
		}
		var waiting []string // a rollout wave, a health gate
		for _, e := range d.Entries {
			if w := e.Waiting(); w != "" {
				waiting = append(waiting, w)
			}
		}
		if len(waiting) > 0 {
			return waitPending, strings.Join(waiting, ", ")
		}
		return waitApplied, ""
	}
	if s := d.Seen; s != nil && s.Digest == next.Digest && s.Outcome != nodestatus.SeenApplied && s.Outcome != nodestatus.SeenMissing {
		return waitFailed, s.Problem()
	}
	if !d.StoppedAt.IsZero() {
		return waitFailed, "the agent stopped"
	}
	if a := d.Applied; a != nil && next.Format == packer.FormatV2 && a.Format == packer.FormatV2.String() && a.Serial > next.Spec.Serial {
		return waitSuperseded, "runs " + a.Label() + ", a newer spec"
	}
	var where []string
	for _, e := range d.Entries {
		if e.Download != nil {
			where = append(where, e.Name+" "+downloadLine(e.Download))
		}
	}
	switch {
	case len(where) > 0:
	case d.Applied != nil:
		where = append(where, "runs "+d.Applied.Label())
	case d.Seen != nil:
		where = append(where, "never applied a spec")
	default:
		where = append(where, "its manager has not reported yet")
	}
	return waitPending, strings.Join(where, ", ")
}

// waitApplied follows the status documents until every agent that reports
// its status (and is neither stopped nor stale when the wait starts)
// applied next or failed, for at most wait, printing a progress line on
// stderr whenever it changes. It returns nil when all applied, else an
// exit error (code 2) naming each agent that failed or had not finished.
func (a *app) waitApplied(parent context.Context, nc natsConn, next *packer.Opened, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	label := fmt.Sprintf("serial %d", next.Spec.Serial)
	if next.Format == packer.FormatV1 {
		label = "v1 spec " + shortHex(next.Digest)
	}
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, nodestatus.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return &exitError{code: 2, err: fmt.Errorf("cannot wait for %s: bucket %s does not exist, so no agent reports its status", label, nodestatus.Bucket)}
	}
	if err != nil {
		return nc.explain(fmt.Errorf("cannot wait for %s: open bucket %s: %w", label, nodestatus.Bucket, err))
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		return nc.explain(fmt.Errorf("cannot wait for %s: watch %s: %w", label, nodestatus.Bucket, err))
	}
	progress := newProgressLine(a.stderr)
	defer progress.end()

	start := time.Now()
	nodes := map[string]*nodeWait{} // by status key
	var skipped []string            // stale when the wait started
	initial := true
	for {
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return parent.Err()
			}
			progress.end()
			return waitTimedOut(label, wait, nodes)
		case e, ok := <-watch.Updates():
			if !ok {
				return fmt.Errorf("waiting for %s: the watch of %s ended", label, nodestatus.Bucket)
			}
			if e == nil {
				initial = false
				if len(nodes) == 0 {
					progress.end()
					return &exitError{code: 2, err: fmt.Errorf("nothing to wait for: no running agent reports its status in %s%s", nodestatus.Bucket, staleNote(skipped))}
				}
				if len(skipped) > 0 {
					progress.note(fmt.Sprintf("not waiting for %d stale agent%s: %s", len(skipped), plural(len(skipped)), strings.Join(capList(skipped, maxNamed), ", ")))
				}
			} else {
				skipped = trackNode(nodes, skipped, e, next, initial, start)
			}
			if initial {
				continue
			}
			counts, summary := waitSummary(label, nodes)
			progress.show(summary)
			if counts[waitPending] == 0 {
				progress.end()
				return waitFinished(a, label, nodes, counts)
			}
		}
	}
}

// trackNode updates nodes with one status document: agents found at the
// start count unless stopped or stale, agents that start reporting later
// count too; a deleted document drops its agent. It returns skipped with
// the identity of a stale agent found at the start added.
func trackNode(nodes map[string]*nodeWait, skipped []string, e jetstream.KeyValueEntry, next *packer.Opened, initial bool, start time.Time) []string {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		delete(nodes, key)
		return skipped
	}
	d, err := nodestatus.Read(key, e.Value(), e.Created(), time.Now())
	if err != nil {
		return skipped // unreadable or forged: `mms status` reports it
	}
	n, ok := nodes[key]
	if !ok {
		if initial && !d.StoppedAt.IsZero() {
			return skipped
		}
		limit := 3 * cmp.Or(d.HeartbeatInterval(), nodestatus.DefaultHeartbeat)
		if initial && start.Sub(d.UpdatedAt) > limit {
			return append(skipped, termtext.Escape(d.Identity))
		}
		n = &nodeWait{identity: termtext.Escape(d.Identity)}
		nodes[key] = n
	}
	state, detail := judge(d, next)
	n.state, n.detail = state, termtext.Escape(detail)
	return skipped
}

// waitSummary counts the agents by state and says so in one line:
// "2/3 applied, 1 failed: web3: web failed: install: sha256 mismatch".
func waitSummary(label string, nodes map[string]*nodeWait) (map[waitState]int, string) {
	counts := map[waitState]int{}
	var firstFailed *nodeWait
	for _, n := range sortedNodes(nodes) {
		counts[n.state]++
		if n.state == waitFailed && firstFailed == nil {
			firstFailed = n
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d applied", label, counts[waitApplied]+counts[waitSuperseded], len(nodes))
	if firstFailed != nil {
		fmt.Fprintf(&b, ", %d failed: %s: %s", counts[waitFailed], firstFailed.identity, firstFailed.detail)
	}
	return counts, b.String()
}

// waitFinished reports the end of a wait in which no agent is pending.
func waitFinished(a *app, label string, nodes map[string]*nodeWait, counts map[waitState]int) error {
	if counts[waitFailed] == 0 {
		note := ""
		if s := counts[waitSuperseded]; s > 0 {
			note = fmt.Sprintf(" (%d of them already run a newer spec)", s)
		}
		who := fmt.Sprintf("all %d reporting agents", len(nodes))
		if len(nodes) == 1 {
			who = "the one reporting agent"
		}
		fmt.Fprintf(a.stdout, "%s applied by %s%s\n", label, who, note)
		return nil
	}
	var lines []string
	for _, n := range sortedNodes(nodes) {
		if n.state == waitFailed {
			lines = append(lines, "  "+n.identity+": "+n.detail)
		}
	}
	return &exitError{code: 2, err: fmt.Errorf("%s failed on %d of %d agents:\n%s", label, counts[waitFailed], len(nodes), strings.Join(lines, "\n"))}
}

// waitTimedOut reports a wait that ran out of time.
func waitTimedOut(label string, wait time.Duration, nodes map[string]*nodeWait) error {
	var lines []string
	applied := 0
	for _, n := range sortedNodes(nodes) {
		switch n.state {
		case waitPending:
			lines = append(lines, "  "+n.identity+": not yet: "+n.detail)
		case waitFailed:
			lines = append(lines, "  "+n.identity+": failed: "+n.detail)
		default:
			applied++
		}
	}
	return &exitError{code: 2, err: fmt.Errorf("timed out after %s waiting for %s: %d of %d agents applied it:\n%s", wait, label, applied, len(nodes), strings.Join(lines, "\n"))}
}

// sortedNodes returns the nodes by identity.
func sortedNodes(nodes map[string]*nodeWait) []*nodeWait {
	out := make([]*nodeWait, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *nodeWait) int { return cmp.Compare(a.identity, b.identity) })
	return out
}

// staleNote mentions the stale agents not waited for.
func staleNote(skipped []string) string {
	if len(skipped) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d stale: %s)", len(skipped), strings.Join(capList(skipped, maxNamed), ", "))
}

// maxTerminalLine caps the progress line on a terminal, in characters.
const maxTerminalLine = 100

// progressLine prints a line that changes: rewritten in place on a
// terminal, one line per change elsewhere (logs, pipes).
type progressLine struct {
	w        io.Writer
	terminal bool
	last     string
	open     bool // a line is shown without its newline (terminal)
}

func newProgressLine(w io.Writer) *progressLine {
	return &progressLine{w: w, terminal: isTerminal(w)}
}

// show prints s if it differs from the line shown.
func (p *progressLine) show(s string) {
	if s == p.last {
		return
	}
	p.last = s
	if p.terminal {
		// One terminal row, so the next rewrite erases all of it.
		fmt.Fprint(p.w, "\r\x1b[K"+ellipsize(s, maxTerminalLine))
		p.open = true
		return
	}
	fmt.Fprintln(p.w, s)
}

// note prints s on a line of its own.
func (p *progressLine) note(s string) {
	p.end()
	fmt.Fprintln(p.w, s)
}

// end finishes the line shown, if any.
func (p *progressLine) end() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	if lw, ok := w.(*lockedWriter); ok {
		w = lw.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
