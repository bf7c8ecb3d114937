package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
)

// rolloutOptions are the flags of `mms rollout status`.
type rolloutOptions struct {
	nats    natsFlags
	bucket  string
	key     string
	machine string
	watch   bool
	jsonOut bool
}

func (a *app) newRolloutCmd() *cobra.Command {
	var o rolloutOptions
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow the rollouts of the live spec",
		Long: `A spec entry with a rollout policy reaches the nodes it selects in waves:
each node ranks the nodes that report their status the same way, a wave
starts once every node of the earlier waves runs the new version healthy
(its health gate) and the pause has passed, and a failure in an earlier
wave halts the rollout for the nodes after it (past the failure budget,
rollout.max_failed). There is no control server: every agent decides for
itself from the status documents, and pause, resume and undo are signed
edits of the live spec.`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each rollout of the live spec: waves, nodes, healthy / pending / failed, where it halted",
		Long: `Show each entry of the live spec that has a rollout policy: its waves with
the nodes in each (as every agent ranks them), the old and new version by
name, each node's state (healthy, pending, held, rolled_back, unhealthy,
failed, stale, or old when it has not applied the spec), the wave under way
and when it starts after a pause, and where and why the rollout halted.

The waves and every halt come from the rule the agents apply themselves
(package manager/rollout), on the same status documents: a node of an
earlier wave that failed with the new version halts the rollout here
exactly when it halts the agents; one that stopped reporting holds the
later waves (it may be restarting or failing over to another server) until
it reports again, unless the policy says stale: skip.

Versions are named as the nodes report them. --watch follows the buckets
with a KV watch, redraws every second and remembers what it saw: the new
version's name once a node ran it, the old versions once every node moved
on. A single read knows only what the nodes report now.`,
		Example: `  mms rollout status
  mms rollout status --machine web --watch
  mms rollout status --json | jq '.[] | select(.halted)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.rolloutStatus(cmd.Context(), o)
		},
	}
	f := status.Flags()
	o.nats.registerClient(status, f)
	f.StringVar(&o.bucket, "bucket", "MACHINES", "the Key-Value bucket of the live spec")
	f.StringVar(&o.key, "key", "machines", "the key of the live spec in --bucket")
	f.StringVar(&o.machine, "machine", "", "show only the rollout of this entry")
	f.BoolVar(&o.watch, "watch", false, "follow the buckets and redraw every second until interrupted")
	f.BoolVar(&o.jsonOut, "json", false, "print the rollouts as a JSON array")
	cmd.AddCommand(status)
	cmd.AddCommand(a.newRolloutEditCmds()...)
	return cmd
}

func (a *app) rolloutStatus(parent context.Context, o rolloutOptions) error {
	nc, err := o.nats.connect(parent, a, "mms rollout status") // --timeout bounds the connect
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(parent, o.nats.timeout)
	defer cancel()
	if _, err := a.openStatusBucket(ctx, js, nc, false); err != nil {
		return err
	}
	// The watches follow the buckets for as long as --watch runs; --timeout
	// bounds the first read.
	life := ctx
	if o.watch {
		life = parent
	}
	w, err := fleet.Follow(life, js, fleet.Options{SpecBucket: o.bucket, SpecKey: o.key, ReadTimeout: o.nats.timeout})
	if err != nil {
		return nc.explain(err)
	}
	defer w.Stop()
	for {
		now := time.Now()
		views, err := rolloutsToShow(w.Tracker(), o.machine, now)
		if err != nil {
			return nc.explain(err)
		}
		if o.watch && !o.jsonOut && isTerminal(a.stdout) {
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J") // home and clear, between redraws
		}
		if err := a.printRollouts(views, o.jsonOut, now); err != nil {
			return err
		}
		if !o.watch {
			return nil
		}
		// Redraw every second (a pause counts down, nodes go stale);
		// meanwhile apply what changes.
		for next := now.Add(time.Second); time.Until(next) > 0; {
			if _, err := w.Next(parent, time.Until(next)); err != nil {
				if parent.Err() != nil {
					return nil
				}
				return fmt.Errorf("following %s and %s: %w", o.bucket, nodestatus.Bucket, err)
			}
		}
		if !isTerminal(a.stdout) && !o.jsonOut {
			fmt.Fprintln(a.stdout)
		}
	}
}

// rolloutsToShow returns the rollouts of the live spec t holds (only
// machine's, when set), or why there is none to show.
func rolloutsToShow(t *fleet.Tracker, machine string, now time.Time) ([]fleet.Rollout, error) {
	sp := t.Spec()
	switch sp.State {
	case fleet.SpecNone:
		return nil, fmt.Errorf("no spec at %s: nothing rolls out", sp.Where())
	case fleet.SpecUndecodable:
		return nil, fmt.Errorf("the spec at %s does not decode: %w", sp.Where(), sp.Err)
	case fleet.SpecUnreadable:
		return nil, fmt.Errorf("read %s: %w", sp.Where(), sp.Err)
	}
	views := t.Rollouts(now)
	if machine == "" {
		return views, nil
	}
	for _, v := range views {
		if v.Machine == machine {
			return []fleet.Rollout{v}, nil
		}
	}
	return nil, fmt.Errorf("the live spec (%s) has no entry %q with a rollout policy", sp.Label(), machine)
}

func (a *app) printRollouts(views []fleet.Rollout, asJSON bool, now time.Time) error {
	if asJSON {
		if views == nil {
			views = []fleet.Rollout{}
		}
		return printJSON(a.stdout, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(a.stdout, "the live spec has no entry with a rollout policy")
		return nil
	}
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		printRollout(a.stdout, v, now)
	}
	return nil
}

// printRollout prints one rollout for a person.
func printRollout(w io.Writer, v fleet.Rollout, now time.Time) {
	esc := termtext.Escape
	fmt.Fprintln(w, esc(v.Headline()))
	fmt.Fprintln(w, esc(v.StatusLine(now)))
	if v.Problem != "" {
		return
	}
	for _, note := range v.Notes() {
		fmt.Fprintln(w, esc(note))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tSIZE\tNODE\tSTATE\tVERSION\tDETAIL")
	for _, wv := range v.Waves {
		if len(wv.Nodes) == 0 {
			fmt.Fprintf(tw, "%d\t%s\t-\t\t\t\n", wv.Wave, esc(wv.Size))
		}
		for j, n := range wv.Nodes {
			wave, size := "", ""
			if j == 0 {
				wave, size = fmt.Sprint(wv.Wave), esc(wv.Size)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", wave, size, esc(n.Identity), esc(string(n.State)), esc(n.Version), esc(n.Detail))
		}
	}
	tw.Flush()
}
