package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// The exit codes of `mms put --wait` (besides 0, every agent applied the
// spec, some perhaps failing within a rollout's failure budget, and 1, the
// put itself failed).
const (
	// exitWaitFailed: an agent rejected the spec or failed an entry, a
	// rollout halted, or no agent reports its status.
	exitWaitFailed = 2
	// exitWaitTimedOut: --wait ran out before every agent finished.
	exitWaitTimedOut = 3
)

// waitApplied follows the status documents until every agent that reports
// its status (and is neither stopped nor stale when the wait starts)
// applied next or failed, for at most wait, printing a progress line on
// stderr whenever it changes (fleet.Wait judges). It returns nil when all
// applied, else an exit error naming each agent that failed (code
// exitWaitFailed) or had not finished (exitWaitTimedOut).
func (a *app) waitApplied(parent context.Context, nc natsConn, next *packer.Opened, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	start := time.Now()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	w, err := fleet.Follow(ctx, js, fleet.Options{StatusOnly: true})
	label := fleet.WaitLabel(next)
	if err != nil {
		switch {
		case parent.Err() != nil:
			return parent.Err()
		case errors.Is(err, jetstream.ErrBucketNotFound):
			return &exitError{code: exitWaitFailed, err: fmt.Errorf("cannot wait for %s: bucket %s does not exist, so no agent reports its status", label, nodestatus.Bucket)}
		case ctx.Err() != nil:
			return &exitError{code: exitWaitTimedOut, err: fmt.Errorf("timed out after %s waiting for %s: the agents' status documents were not read in time", wait, label)}
		}
		return nc.explain(fmt.Errorf("cannot wait for %s: %w", label, err))
	}
	defer w.Stop()
	judge := fleet.NewWait(w.Tracker(), next, start)
	progress := newProgressLine(a.stderr)
	defer progress.end()

	v := judge.Verdict(time.Now())
	skipped := escapeAll(judge.Skipped())
	if len(v.Nodes) == 0 {
		return &exitError{code: exitWaitFailed, err: fmt.Errorf("nothing to wait for: no running agent reports its status in %s%s", nodestatus.Bucket, staleNote(skipped))}
	}
	if len(skipped) > 0 {
		progress.note(fmt.Sprintf("not waiting for %d stale agent%s: %s", len(skipped), plural(len(skipped)), strings.Join(capList(skipped, maxNamed), ", ")))
	}
	// On a terminal the line is redrawn every second (a rollout's pause
	// counts down); elsewhere it is printed when a document changes it.
	redraw := wait
	if progress.terminal {
		redraw = time.Second
	}
	for {
		progress.show(termtext.Escape(v.Progress))
		if v.Done() {
			progress.end()
			return waitFinished(a, v)
		}
		if _, err := w.Next(ctx, redraw); err != nil {
			switch {
			case parent.Err() != nil:
				return parent.Err()
			case ctx.Err() != nil:
				progress.end()
				return waitTimedOut(label, wait, judge.Verdict(time.Now()))
			}
			return fmt.Errorf("waiting for %s: the watch of %s ended: %w", label, nodestatus.Bucket, err)
		}
		v = judge.Verdict(time.Now())
	}
}

// waitFinished reports the end of a wait in which no agent is pending.
func waitFinished(a *app, v fleet.Verdict) error {
	if v.OK() {
		note := ""
		if s := v.Counts[fleet.WaitSuperseded]; s > 0 {
			note = fmt.Sprintf(" (%d of them already run a newer spec)", s)
		}
		who := fmt.Sprintf("all %d reporting agents", len(v.Nodes))
		if len(v.Nodes) == 1 {
			who = "the one reporting agent"
		}
		if n := v.Counts[fleet.WaitTolerated]; n > 0 {
			who = fmt.Sprintf("%d of %d reporting agents", len(v.Nodes)-n, len(v.Nodes))
		}
		fmt.Fprintf(a.stdout, "%s applied by %s%s\n", v.Label, who, note)
		for _, n := range v.Nodes {
			if n.State == fleet.WaitTolerated {
				fmt.Fprintf(a.stdout, "  %s failed within the rollout's failure budget (rolled back there): %s\n", termtext.Escape(n.Identity), termtext.Escape(n.Detail))
			}
		}
		return nil
	}
	var lines []string
	for _, n := range v.Nodes {
		if n.State == fleet.WaitFailed {
			lines = append(lines, "  "+termtext.Escape(n.Identity)+": "+termtext.Escape(n.Detail))
		}
	}
	return &exitError{code: exitWaitFailed, err: fmt.Errorf("%s failed on %d of %d agents:\n%s", v.Label, v.Counts[fleet.WaitFailed], len(v.Nodes), strings.Join(lines, "\n"))}
}

// waitTimedOut reports a wait that ran out of time.
func waitTimedOut(label string, wait time.Duration, v fleet.Verdict) error {
	var lines []string
	for _, n := range v.Nodes {
		switch n.State {
		case fleet.WaitPending:
			lines = append(lines, "  "+termtext.Escape(n.Identity)+": not yet: "+termtext.Escape(n.Detail))
		case fleet.WaitFailed:
			lines = append(lines, "  "+termtext.Escape(n.Identity)+": failed: "+termtext.Escape(n.Detail))
		}
	}
	for _, r := range v.Rollouts {
		if !r.Done {
			lines = append(lines, "  rollout: "+termtext.Escape(r.Summary(time.Now())))
		}
	}
	return &exitError{code: exitWaitTimedOut, err: fmt.Errorf("timed out after %s waiting for %s: %d of %d agents applied it:\n%s", wait, label, v.Applied(), len(v.Nodes), strings.Join(lines, "\n"))}
}

// staleNote mentions the stale agents not waited for.
func staleNote(skipped []string) string {
	if len(skipped) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d stale: %s)", len(skipped), strings.Join(capList(skipped, maxNamed), ", "))
}

// escapeAll escapes each string of list for the terminal.
func escapeAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = termtext.Escape(s)
	}
	return out
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
