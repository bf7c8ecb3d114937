package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
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
wave halts the rollout for the nodes after it. There is no control server:
every agent decides for itself from the status documents.`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each rollout of the live spec: waves, nodes, healthy / pending / failed, where it halted",
		Long: `Show each entry of the live spec that has a rollout policy: its waves with
the nodes in each (as every agent ranks them), the old and new version,
each node's state (healthy, pending, held, rolled_back, unhealthy, failed,
stale, or old when it has not applied the spec), the wave under way, and
where and why the rollout halted.`,
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
	f.BoolVar(&o.watch, "watch", false, "redraw every second until interrupted")
	f.BoolVar(&o.jsonOut, "json", false, "print the rollouts as a JSON array")
	cmd.AddCommand(status)
	return cmd
}

// rolloutView is one entry's rollout, as `mms rollout status` shows it.
type rolloutView struct {
	Machine     string       `json:"machine"`
	Checksum    string       `json:"checksum"`
	NewVersion  string       `json:"new_version,omitempty"`
	OldVersions []string     `json:"old_versions,omitempty"`
	Policy      spec.Rollout `json:"policy"`
	Waves       []waveView   `json:"waves"`
	// Current is the first wave not yet healthy on the new version (0:
	// every wave is).
	Current  int    `json:"current_wave"`
	Done     bool   `json:"done"`
	Halted   bool   `json:"halted"`
	HaltedAt int    `json:"halted_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// waveView is one wave: its nodes and how each is doing.
type waveView struct {
	Wave  int             `json:"wave"`
	Size  string          `json:"size"`
	Nodes []rolloutNodeUI `json:"nodes"`
}

// rolloutNodeUI is one node of a wave.
type rolloutNodeUI struct {
	Identity string `json:"identity"`
	State    string `json:"state"`
	Version  string `json:"version,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func (a *app) rolloutStatus(parent context.Context, o rolloutOptions) error {
	nc, err := o.nats.connect(parent, a, "mms rollout status") // --timeout bounds the connect
	if err != nil {
		return err
	}
	defer nc.Close()
	for {
		ctx, cancel := context.WithTimeout(parent, o.nats.timeout)
		views, err := a.readRollouts(ctx, nc, o)
		cancel()
		if err != nil {
			return err
		}
		if o.watch && !o.jsonOut && isTerminal(a.stdout) {
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J") // home and clear, between redraws
		}
		if err := a.printRollouts(views, o.jsonOut); err != nil {
			return err
		}
		if !o.watch {
			return nil
		}
		select {
		case <-parent.Done():
			return nil
		case <-time.After(time.Second):
		}
		if !isTerminal(a.stdout) && !o.jsonOut {
			fmt.Fprintln(a.stdout)
		}
	}
}

// readRollouts reads the live spec and every status document and builds
// the view of each rollout.
func (a *app) readRollouts(ctx context.Context, nc natsConn, o rolloutOptions) ([]rolloutView, error) {
	js, err := nc.JetStream()
	if err != nil {
		return nil, err
	}
	specKV, err := js.KeyValue(ctx, o.bucket)
	if err != nil {
		return nil, nc.explain(fmt.Errorf("open bucket %s: %w", o.bucket, err))
	}
	e, err := specKV.Get(ctx, o.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("no spec at %s/%s: nothing rolls out", o.bucket, o.key)
	}
	if err != nil {
		return nil, nc.explain(fmt.Errorf("read %s/%s: %w", o.bucket, o.key, err))
	}
	op, err := packer.Inspect(e.Value())
	if err != nil {
		return nil, fmt.Errorf("the spec at %s/%s does not decode: %w", o.bucket, o.key, err)
	}
	statusKV, err := a.openStatusBucket(ctx, js, nc, false)
	if err != nil {
		return nil, err
	}
	rows, err := readStatusRows(ctx, statusKV, time.Now())
	if err != nil {
		return nil, err
	}
	var docs []*nodestatus.Document
	for _, r := range rows {
		if r.doc != nil && r.err == nil { // forged documents take no part
			docs = append(docs, r.doc)
		}
	}
	var views []rolloutView
	for _, m := range op.Spec.Machines {
		if m.Rollout == nil || (o.machine != "" && m.Name != o.machine) {
			continue
		}
		views = append(views, rolloutOf(m, docs, time.Now()))
	}
	if o.machine != "" && len(views) == 0 {
		return nil, fmt.Errorf("the live spec (serial %d) has no entry %q with a rollout policy", op.Spec.Serial, o.machine)
	}
	return views, nil
}

// rolloutOf builds the view of entry m's rollout from the status
// documents, with the waves every agent computes.
func rolloutOf(m spec.Machine, docs []*nodestatus.Document, now time.Time) rolloutView {
	v := rolloutView{Machine: m.Name, Checksum: m.Checksum, Policy: *m.Rollout}
	policy, err := rollout.NewPolicy(m.Rollout)
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	nodes := map[string]rollout.Node{}
	entries := map[string]nodestatus.Entry{}
	var ids []string
	for _, d := range docs {
		n, ok := nodestatus.NodeOf(d, m.Name, now)
		if !ok || (n.Stale && policy.SkipStale) {
			continue
		}
		nodes[d.Identity], ids = n, append(ids, d.Identity)
		for _, e := range d.Entries {
			if e.Name == m.Name {
				entries[d.Identity] = e
			}
		}
	}
	waves := rollout.Assign(ids, m.Name, m.Checksum, policy.Waves)
	for i, members := range waves {
		w := waveView{Wave: i + 1, Size: m.Rollout.Waves[i], Nodes: []rolloutNodeUI{}}
		allHealthy := true
		for _, id := range members {
			n, e := nodes[id], entries[id]
			ui := rolloutNodeUI{Identity: id, Version: e.Version}
			switch {
			case n.Stale:
				ui.State = "stale"
			case e.Halted():
				ui.State, ui.Detail = "held", "the rollout halted"
			case e.Outcome == string(manager.EntryHeld):
				ui.State, ui.Detail = "held", strings.TrimPrefix(e.Reason, "held: ")
			case n.Checksum == m.Checksum && n.Health != "":
				ui.State = string(n.Health)
				if n.Health != rollout.Healthy && n.Health != rollout.Pending {
					ui.Detail = n.Reason
				}
			default:
				ui.State = "old"
			}
			if n.Checksum == m.Checksum && (n.Health == rollout.Healthy || n.Health == rollout.Pending) && e.Version != "" {
				v.NewVersion = e.Version
			} else if e.Version != "" && !slices.Contains(v.OldVersions, e.Version) {
				v.OldVersions = append(v.OldVersions, e.Version)
			}
			if ui.State != string(rollout.Healthy) {
				allHealthy = false
			}
			if !v.Halted && n.Checksum == m.Checksum && (n.Health == rollout.RolledBack || n.Health == rollout.Unhealthy || n.Health == rollout.Failed) {
				v.Halted, v.HaltedAt = true, i+1
				v.Reason = fmt.Sprintf("node %s: %s", id, n.Reason)
			}
			w.Nodes = append(w.Nodes, ui)
		}
		if !allHealthy && v.Current == 0 {
			v.Current = i + 1
		}
		v.Waves = append(v.Waves, w)
	}
	slices.Sort(v.OldVersions)
	v.Done = v.Current == 0 && !v.Halted
	return v
}

func (a *app) printRollouts(views []rolloutView, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if views == nil {
			views = []rolloutView{}
		}
		return enc.Encode(views)
	}
	if len(views) == 0 {
		fmt.Fprintln(a.stdout, "the live spec has no entry with a rollout policy")
		return nil
	}
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		printRollout(a.stdout, v)
	}
	return nil
}

// printRollout prints one rollout for a person.
func printRollout(w io.Writer, v rolloutView) {
	esc := termtext.Escape
	from := strings.Join(v.OldVersions, ", ")
	if from == "" {
		from = "nothing"
	}
	to := shortHex(v.Checksum)
	if v.NewVersion != "" {
		to = v.NewVersion + " (" + to + ")"
	}
	fmt.Fprintf(w, "%s: %s → %s  waves %s, pause %v\n", esc(v.Machine), esc(from), esc(to),
		esc(strings.Join(v.Policy.Waves, ", ")), v.Policy.Pause.Std())
	switch {
	case v.Halted:
		fmt.Fprintf(w, "HALTED at wave %d: %s\n", v.HaltedAt, esc(v.Reason))
	case v.Done:
		fmt.Fprintln(w, "done: every node runs the new version healthy")
	default:
		fmt.Fprintf(w, "under way: wave %d\n", v.Current)
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", wave, size, esc(n.Identity), esc(n.State), esc(n.Version), esc(n.Detail))
		}
	}
	tw.Flush()
}
