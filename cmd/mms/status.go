package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/provision"
)

type statusOptions struct {
	node       string // one node to show in full
	nats       natsFlags
	jsonOut    bool
	check      bool
	create     bool
	staleAfter time.Duration
	bucket     string
	key        string
}

// helpWidth is the width the help texts are written to.
const helpWidth = 75

// wrap breaks s into lines of at most width columns between words (a word
// longer than width gets a line of its own).
func wrap(s string, width int) string {
	var b strings.Builder
	line := 0
	for _, w := range strings.Fields(s) {
		n := utf8.RuneCountInString(w)
		switch {
		case line == 0:
		case line+1+n > width:
			b.WriteByte('\n')
			line = 0
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += n
	}
	return b.String()
}

func (a *app) newStatusCmd() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status [NODE]",
		Short: "Show every agent's status: the spec it runs and saw, machines, problems, freshness",
		Long: `Status reads every agent's status document from the ` + nodestatus.Bucket + ` KV bucket
and the current spec from --bucket/--key, and prints the server it read
them from (and how it found it), the current spec, and one line per agent:

  NATS: nats://127.0.0.1:4222, found through the local mms agent (/var/lib/mms/nats-context.json)
  spec MACHINES/machines (revision 7): v2 serial 4242, 3 machines (signature not verified here)
  IDENTITY  APPLIED  SEEN               MACHINES            MESSAGE                                   AGE  FLAGS
  web1      4242                        3 (RUN 2, MANAGE 1)                                           4s
  web2      4242     4000 ignored-older  2 (RUN 2)           serial 4000 ignored-older: ignored o…    2s   rejected
  db1       4241                        2 (RUN 2)           web failed: install: sha256 mismatch      9m   behind,failed,stale

APPLIED is the spec the node runs ("never" when it never applied one), SEEN
the last spec it saw when that is another one or was not applied, and why,
or "applying" while a pass for it still downloads. MESSAGE is the node's
first problem; AGE how long ago it wrote its document.

` + wrap("Why a node did not apply a spec: "+strings.Join(manager.RejectionOutcomes(), ", ")+".", helpWidth) + `

FLAGS: rejected (the last spec seen was not applied), failed (an entry
failed or was rolled back), expired (the applied spec has expired), behind
(runs an older spec than the current one, or none), error (a machine has
an error), stale (not updated for 3 heartbeats, or --stale-after), stopped
(the agent shut down cleanly), nats (the server denied the agent
something), invalid (the document cannot be read), forged (the document
under the node's key claims another identity: a node speaks only for the
identity of its key, so its content is ignored). The current spec is
decoded without verifying its signature: it is only compared, never
trusted.

'mms status NODE' prints one agent in full: the keys it trusts, the
applied and seen spec, every spec entry with its outcome and reason, every
machine with its state, and every problem.

--json prints the documents as a JSON array (one document with NODE),
each with what the table adds: "key" (its key in the bucket), "flags"
([{"name", "detail"}], in the order above), "message" and "age_seconds".
--check exits with code 2 when any agent is flagged (other than nats),
and says which and why, for monitoring.

Agents with the embedded server create the bucket; for agents that connect
to your NATS with --server, the NATS admin creates it with every other
resource of the fleet: 'mms init' (--create makes just this bucket, the
same way).`,
		Example: `  mms status
  mms status web1
  mms status --server nats://nats1:4222 --check
  mms status --json | jq '.[] | select(.seen.outcome != "applied") | .identity'
  mms status --json | jq -r '.[] | select(.flags | length > 0) | "\(.identity): \(.message)"'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.node = args[0]
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.nats.timeout)
			defer cancel()
			nc, err := o.nats.connect(ctx, a, "mms status")
			if err != nil {
				return err
			}
			defer nc.Close()
			return a.status(ctx, nc, o, time.Now())
		},
	}
	f := cmd.Flags()
	o.nats.registerClient(cmd, f)
	f.BoolVar(&o.jsonOut, "json", false, "print the status documents, with key, flags, message and age_seconds, as a JSON array (one document with NODE)")
	f.BoolVar(&o.check, "check", false, "exit 2 when any agent is flagged (other than nats), naming each and why")
	f.BoolVar(&o.create, "create", false, "create the "+nodestatus.Bucket+" bucket when it does not exist, as 'mms init' would")
	f.DurationVar(&o.staleAfter, "stale-after", 0, "call an agent stale after this long without an update (default: 3 of its heartbeats)")
	f.StringVar(&o.bucket, "bucket", "MACHINES", "KV bucket holding the signed spec")
	f.StringVar(&o.key, "key", "machines", "key of the signed spec in --bucket")
	return cmd
}

func (a *app) status(ctx context.Context, nc natsConn, o statusOptions, now time.Time) error {
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	if _, err := a.openStatusBucket(ctx, js, nc, o.create); err != nil {
		return err
	}
	t, err := fleet.Read(ctx, js, fleet.Options{SpecBucket: o.bucket, SpecKey: o.key, StaleAfter: o.staleAfter})
	if err != nil {
		return nc.explain(err)
	}
	nodes := t.Nodes(now)
	if o.node != "" {
		n, err := fleet.Find(nodes, o.node)
		if err != nil {
			return errors.New(termtext.Escape(err.Error()))
		}
		nodes = []fleet.Node{n}
	}
	spec := t.Spec()

	switch {
	case o.jsonOut:
		if err := a.printStatusJSON(nodes, o.node != ""); err != nil {
			return err
		}
	case o.node != "":
		fmt.Fprintln(a.stdout, "NATS: "+termtext.Escape(nc.describe()))
		fmt.Fprintln(a.stdout, termtext.Escape(spec.Line()))
		printNode(a, nodes[0], now)
	default:
		fmt.Fprintln(a.stdout, "NATS: "+termtext.Escape(nc.describe()))
		fmt.Fprintln(a.stdout, termtext.Escape(spec.Line()))
		if len(nodes) == 0 {
			fmt.Fprintf(a.stdout, "no agent has written its status to %s on %s yet: agents write it when they connect and every --status-interval (30s by default)\n",
				nodestatus.Bucket, nc.ConnectedUrlRedacted())
			return nil
		}
		printStatusTable(a, nodes)
		for _, r := range t.Rollouts(now) {
			if !r.Done || r.Budget != nil || len(r.Held) > 0 {
				fmt.Fprintln(a.stdout, "rollout "+termtext.Escape(r.Summary(now)))
			}
		}
	}

	if !o.check {
		return nil
	}
	var bad []string
	for _, n := range nodes {
		if problems := n.Problems(); len(problems) > 0 {
			bad = append(bad, "  "+termtext.Escape(n.Identity)+": "+termtext.Escape(strings.Join(problems, "; ")))
		}
	}
	if len(bad) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d of %d agents need attention:\n%s", len(bad), len(nodes), strings.Join(bad, "\n"))}
	}
	return nil
}

// printStatusJSON prints the readable documents, each with the view's
// key, flags, message and age: an array, or the one document of a NODE.
func (a *app) printStatusJSON(nodes []fleet.Node, one bool) error {
	readable := make([]fleet.Node, 0, len(nodes))
	for _, n := range nodes {
		if n.Doc != nil {
			readable = append(readable, n)
		} else {
			a.log.Warn("skipping an unreadable status document", "key", n.Key, "error", n.Err)
		}
	}
	var v any = readable
	if one {
		if len(readable) == 0 {
			return fmt.Errorf("the status document of %s cannot be read: %w", termtext.Escape(nodes[0].Key), nodes[0].Err)
		}
		v = readable[0]
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status documents: %w", err)
	}
	fmt.Fprintln(a.stdout, string(b))
	return nil
}

// openStatusBucket binds the status bucket, creating it if asked to.
func (a *app) openStatusBucket(ctx context.Context, js jetstream.JetStream, nc natsConn, create bool) (jetstream.KeyValue, error) {
	kv, err := natsbox.BindKV(ctx, js, nodestatus.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		f, ferr := fleetOf(ctx, nc, js, "", 0)
		if ferr != nil {
			return nil, fmt.Errorf("--create: %w", ferr)
		}
		if err := a.ensure(ctx, nc, js, f, provision.KindStatus, nodestatus.Bucket); err != nil {
			return nil, err
		}
		kv, err = js.KeyValue(ctx, nodestatus.Bucket)
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s does not exist on %s: no agent could write its status there; agents with the embedded server create it, otherwise the NATS admin runs 'mms init' once",
			nodestatus.Bucket, nc.ConnectedUrlRedacted())
	}
	if err != nil {
		return nil, nc.explain(fmt.Errorf("open bucket %s: %w", nodestatus.Bucket, err))
	}
	return kv, nil
}
