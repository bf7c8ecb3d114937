package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
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

func (a *app) newStatusCmd() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status [NODE]",
		Short: "Show every agent's status: the spec it runs and saw, machines, problems, freshness",
		Long: `Status reads every agent's status document from the ` + nodestatus.Bucket + ` KV bucket
and the current spec from --bucket/--key, and prints one line per agent:

  IDENTITY  APPLIED  SEEN               MACHINES            MESSAGE                                   AGE  FLAGS
  web1      4242                        3 (RUN 2, MANAGE 1)                                           4s
  web2      4242     4000 ignored-older  2 (RUN 2)           serial 4000 ignored-older: ignored o…    2s   rejected
  db1       4241                        2 (RUN 2)           web failed: install: sha256 mismatch      9m   behind,failed,stale

APPLIED is the spec the node runs ("never" when it never applied one), SEEN
the last spec it saw when that is another one or was not applied, and why
(ignored-older, untrusted, expired, equivocation, legacy-refused,
malformed, invalid, not-yet-valid, missing, error). MESSAGE is the node's
first problem; AGE how long ago it wrote its document.

FLAGS: rejected (the last spec seen was not applied), failed (an entry
failed or was rolled back), expired (the applied spec has expired), behind
(runs an older spec than the current one, or none), error (a machine has
an error), stale (not updated for 3 heartbeats, or --stale-after), stopped
(the agent shut down cleanly), nats (the server denied the agent
something), invalid (the document cannot be read). The current spec is
decoded without verifying its signature: it is only compared, never
trusted.

'mms status NODE' prints one agent in full: the keys it trusts, the
applied and seen spec, every spec entry with its outcome and reason, every
machine with its state, and every problem.

--json prints the documents as a JSON array (one document with NODE).
--check exits with code 2 when any agent is flagged (other than nats),
and says which and why, for monitoring.

Agents with the embedded server create the bucket; for agents that connect
to your NATS with --server, create it once with --create.`,
		Example: `  mms status
  mms status web1
  mms status --server nats://nats1:4222 --check
  mms status --json | jq '.[] | select(.seen.outcome != "applied") | .identity'`,
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
	f.BoolVar(&o.jsonOut, "json", false, "print the status documents as a JSON array (one document with NODE)")
	f.BoolVar(&o.check, "check", false, "exit 2 when any agent is flagged (other than nats), naming each and why")
	f.BoolVar(&o.create, "create", false, "create the "+nodestatus.Bucket+" bucket when it does not exist")
	f.DurationVar(&o.staleAfter, "stale-after", 0, "call an agent stale after this long without an update (default: 3 of its heartbeats)")
	f.StringVar(&o.bucket, "bucket", "MACHINES", "KV bucket holding the signed spec")
	f.StringVar(&o.key, "key", "machines", "key of the signed spec in --bucket")
	return cmd
}

// currentSpec is the spec agents should run, as far as `mms status` can
// tell without verifying it.
type currentSpec struct {
	format packer.Format
	serial uint64
	digest string
}

// label names the spec as nodestatus labels a node's: "serial 17", or
// "v1 0123456789ab".
func (c *currentSpec) label() string {
	if c.format == packer.FormatV1 {
		return "v1 " + shortHex(c.digest)
	}
	return fmt.Sprintf("serial %d", c.serial)
}

// nodeRow is one agent's line.
type nodeRow struct {
	key   string
	doc   *nodestatus.Document
	err   error
	flags []nodeFlag
}

func (a *app) status(ctx context.Context, nc natsConn, o statusOptions, now time.Time) error {
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	kv, err := a.openStatusBucket(ctx, js, nc, o.create)
	if err != nil {
		return err
	}
	cur, curNote := readCurrentSpec(ctx, js, o.bucket, o.key)
	rows, err := readStatusRows(ctx, kv, now)
	if err != nil {
		return nc.explain(err)
	}
	if o.node != "" {
		row, err := findRow(rows, o.node)
		if err != nil {
			return err
		}
		rows = []nodeRow{row}
	}
	for i := range rows {
		rows[i].flags = nodeFlags(rows[i], now, cur, o.staleAfter)
	}

	switch {
	case o.jsonOut:
		if err := a.printStatusJSON(rows, o.node != ""); err != nil {
			return err
		}
	case o.node != "":
		fmt.Fprintln(a.stdout, termtext.Escape(curNote))
		printNode(a, rows[0], now)
	default:
		fmt.Fprintln(a.stdout, termtext.Escape(curNote))
		if len(rows) == 0 {
			fmt.Fprintf(a.stdout, "no agent has written its status to %s on %s yet: agents write it when they connect and every --status-interval (30s by default)\n",
				nodestatus.Bucket, nc.ConnectedUrlRedacted())
			return nil
		}
		printStatusTable(a, rows, now)
	}

	if !o.check {
		return nil
	}
	var bad []string
	for _, r := range rows {
		if details := problemDetails(r.flags); len(details) > 0 {
			bad = append(bad, "  "+termtext.Escape(rowName(r))+": "+termtext.Escape(strings.Join(details, "; ")))
		}
	}
	if len(bad) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d of %d agents need attention:\n%s", len(bad), len(rows), strings.Join(bad, "\n"))}
	}
	return nil
}

// printStatusJSON prints the readable documents: an array, or the one
// document of a NODE.
func (a *app) printStatusJSON(rows []nodeRow, one bool) error {
	docs := make([]*nodestatus.Document, 0, len(rows))
	for _, r := range rows {
		switch {
		case r.doc != nil && r.err == nil:
			docs = append(docs, r.doc)
		case r.doc != nil:
			a.log.Warn("skipping a forged status document", "key", r.key, "error", r.err)
		default:
			a.log.Warn("skipping an unreadable status document", "key", r.key, "error", r.err)
		}
	}
	var v any = docs
	if one {
		if len(docs) == 0 {
			return fmt.Errorf("the status document of %s cannot be read: %w", termtext.Escape(rows[0].key), rows[0].err)
		}
		v = docs[0]
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status documents: %w", err)
	}
	fmt.Fprintln(a.stdout, string(b))
	return nil
}

// findRow returns the row of node, an identity or a status key.
func findRow(rows []nodeRow, node string) (nodeRow, error) {
	for _, r := range rows {
		if r.doc != nil && r.err == nil && r.doc.Identity == node {
			return r, nil
		}
	}
	key := nodestatus.Key(node)
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.key == node || r.key == key {
			return r, nil
		}
		names = append(names, termtext.Escape(rowName(r)))
	}
	if len(names) == 0 {
		return nodeRow{}, fmt.Errorf("no status document for %q in %s: no agent has written one yet", node, nodestatus.Bucket)
	}
	return nodeRow{}, fmt.Errorf("no status document for %q in %s; agents that report: %s", node, nodestatus.Bucket, strings.Join(names, ", "))
}

// openStatusBucket binds the status bucket, creating it if asked to.
func (a *app) openStatusBucket(ctx context.Context, js jetstream.JetStream, nc natsConn, create bool) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, nodestatus.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		kv, err = js.CreateKeyValue(ctx, nodestatus.BucketConfig())
		if err == nil {
			a.log.Info("created bucket", "bucket", nodestatus.Bucket)
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s does not exist on %s: no agent could write its status there; agents with the embedded server create it, otherwise run 'mms status --create' once",
			nodestatus.Bucket, nc.ConnectedUrlRedacted())
	}
	if err != nil {
		return nil, nc.explain(fmt.Errorf("open bucket %s: %w", nodestatus.Bucket, err))
	}
	return kv, nil
}

// readCurrentSpec decodes the spec at bucket/key without verifying it, and
// says what it found in a line for people.
func readCurrentSpec(ctx context.Context, js jetstream.JetStream, bucket, key string) (*currentSpec, string) {
	where := bucket + "/" + key
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Sprintf("spec %s: none published yet (no bucket %s)", where, bucket)
	}
	if err != nil {
		return nil, fmt.Sprintf("spec %s: cannot read it (%v); not checking who is behind", where, err)
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Sprintf("spec %s: none published yet", where)
	}
	if err != nil {
		return nil, fmt.Sprintf("spec %s: cannot read it (%v); not checking who is behind", where, err)
	}
	op, err := packer.Inspect(e.Value())
	if err != nil {
		return nil, fmt.Sprintf("spec %s (revision %d): cannot decode it (%v); not checking who is behind", where, e.Revision(), err)
	}
	cur := &currentSpec{format: op.Format, serial: op.Spec.Serial, digest: op.Digest}
	desc := fmt.Sprintf("%s serial %d", op.Format, op.Spec.Serial)
	if op.Format == packer.FormatV1 {
		desc = fmt.Sprintf("v1 digest %.12s", op.Digest)
	}
	return cur, fmt.Sprintf("spec %s (revision %d): %s, %d machine%s (signature not verified here)",
		where, e.Revision(), desc, len(op.Spec.Machines), plural(len(op.Spec.Machines)))
}

// readStatusRows reads every status document as nodestatus.Read does at
// now, sorted by identity. A forged document keeps its row, with the
// nodestatus.ForgedError, to be flagged.
func readStatusRows(ctx context.Context, kv jetstream.KeyValue, now time.Time) ([]nodeRow, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", nodestatus.Bucket, err)
	}
	defer lister.Stop()
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", nodestatus.Bucket, err)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // a listing may repeat keys written meanwhile
	rows := make([]nodeRow, 0, len(keys))
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, fmt.Errorf("read %s/%s: %w", nodestatus.Bucket, k, err)
		}
		doc, err := nodestatus.Read(k, e.Value(), e.Created(), now)
		if f, ok := errors.AsType[*nodestatus.ForgedError](err); ok {
			doc = f.Doc
		}
		rows = append(rows, nodeRow{key: k, doc: doc, err: err})
	}
	slices.SortFunc(rows, func(a, b nodeRow) int { return cmp.Compare(rowName(a), rowName(b)) })
	return rows, nil
}

// rowName is the identity, taken from the key: the document's own
// identity when it agrees (always, unless forged), else the key's
// identity, or the key itself when it is nobody's.
func rowName(r nodeRow) string {
	if r.doc != nil && r.err == nil {
		return r.doc.Identity
	}
	if id, err := nodestatus.IdentityOf(r.key); err == nil {
		return id
	}
	return r.key
}
