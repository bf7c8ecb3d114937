package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// showView is the stable --json shape of `mms show`.
type showView struct {
	Format string `json:"format"`
	// Compressed says the payload travelled zstd-compressed.
	Compressed bool       `json:"compressed,omitempty"`
	Serial     uint64     `json:"serial"`
	IssuedAt   *time.Time `json:"issued_at,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
	// KeyIDs are the key ids the signatures claim; Signatures counts the
	// signatures (a v1 signature names no key).
	KeyIDs     []string `json:"key_ids"`
	Signatures int      `json:"signatures"`
	Digest     string   `json:"digest"`
	// Bucket, Key and Revision say where a live spec was read (--server).
	Bucket   string         `json:"bucket,omitempty"`
	Key      string         `json:"key,omitempty"`
	Revision uint64         `json:"revision,omitempty"`
	Machines []spec.Machine `json:"machines"`
}

type showOptions struct {
	nats        natsFlags
	jsonOut     bool
	bucket, key string
}

func (a *app) newShowCmd() *cobra.Command {
	var o showOptions
	cmd := &cobra.Command{
		Use:   "show [SPEC]",
		Short: "Decode a spec envelope, or the live spec in NATS, for reading (without verifying it)",
		Long: `Decode a spec envelope for reading: format, serial, issue and expiry
times, the key ids that claim to have signed it, and its machines.

SPEC is a file or - for stdin. Without SPEC, show reads the live spec from
the KV bucket agents watch (--bucket/--key on --server, or the nats
context) and prints its revision: 'mms put --revision N' publishes only if
the key is still at the revision you reviewed.

Nothing is verified: the key ids are claims. Use 'mms verify' to check
signatures. Passwords of v1 entries are never printed.`,
		Example: `  mms show spec.json
  mms show --server nats://nats1:4222
  nats --context mms kv get MACHINES machines --raw | mms show - --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v showView
			if len(args) == 1 {
				if f := cmd.Flags(); f.Changed("server") || f.Changed("context") || f.Changed("bucket") || f.Changed("key") {
					return errors.New("give SPEC to show a file, or --server/--context (and --bucket/--key) to show the live spec, not both")
				}
				data, err := a.readSpecArg(args[0])
				if err != nil {
					return err
				}
				if v, err = decodeShowView(data); err != nil {
					return err
				}
			} else {
				var err error
				if v, err = a.liveShowView(cmd.Context(), o); err != nil {
					return err
				}
			}
			if o.jsonOut {
				return printJSON(a.stdout, v)
			}
			return printShow(a, v, time.Now())
		},
	}
	f := cmd.Flags()
	o.nats.registerClient(cmd, f)
	f.BoolVar(&o.jsonOut, "json", false, "print a JSON document instead of a table")
	f.StringVar(&o.bucket, "bucket", "MACHINES", "without SPEC: the Key-Value bucket of the live spec")
	f.StringVar(&o.key, "key", "machines", "without SPEC: the key of the live spec in --bucket")
	return cmd
}

// liveShowView reads the spec at o.bucket/o.key.
func (a *app) liveShowView(parent context.Context, o showOptions) (showView, error) {
	ctx, cancel := context.WithTimeout(parent, o.nats.timeout)
	defer cancel()
	nc, err := o.nats.connect(ctx, a, "mms show")
	if err != nil {
		return showView{}, err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return showView{}, err
	}
	kv, err := js.KeyValue(ctx, o.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return showView{}, fmt.Errorf("no spec published on %s: bucket %s does not exist", nc.ConnectedUrlRedacted(), o.bucket)
	}
	if err != nil {
		return showView{}, nc.explain(fmt.Errorf("open bucket %s: %w", o.bucket, err))
	}
	e, err := kv.Get(ctx, o.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return showView{}, fmt.Errorf("no spec published on %s: %s/%s does not exist (or was deleted)", nc.ConnectedUrlRedacted(), o.bucket, o.key)
	}
	if err != nil {
		return showView{}, nc.explain(fmt.Errorf("read %s/%s: %w", o.bucket, o.key, err))
	}
	v, err := decodeShowView(e.Value())
	if err != nil {
		return showView{}, fmt.Errorf("%s/%s revision %d: %w", o.bucket, o.key, e.Revision(), err)
	}
	v.Bucket, v.Key, v.Revision = o.bucket, o.key, e.Revision()
	return v, nil
}

// decodeShowView decodes an envelope without verifying it.
func decodeShowView(data []byte) (showView, error) {
	o, err := packer.Inspect(data)
	if err != nil {
		return showView{}, err
	}
	v := newShowView(o)
	// Count the signatures: Inspect lists only the key ids they claim,
	// and a v1 signature claims none.
	var sigs struct {
		Signature  string            `json:"signature"`
		Signatures []json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(data), &sigs); err == nil {
		v.Signatures = len(sigs.Signatures)
		if sigs.Signature != "" {
			v.Signatures++
		}
	}
	return v, nil
}

func newShowView(o *packer.Opened) showView {
	v := showView{
		Format:     o.Format.String(),
		Compressed: o.Compressed,
		Serial:     o.Spec.Serial,
		KeyIDs:     o.KeyIDs,
		Digest:     o.Digest,
		Machines:   make([]spec.Machine, len(o.Spec.Machines)),
	}
	if v.KeyIDs == nil {
		v.KeyIDs = []string{}
	}
	if !o.Spec.IssuedAt.IsZero() {
		t := o.Spec.IssuedAt.UTC()
		v.IssuedAt = &t
	}
	if !o.Spec.Expires.IsZero() {
		t := o.Spec.Expires.UTC()
		v.Expires = &t
	}
	for i, m := range o.Spec.Machines {
		if m.Password != "" {
			m.Password = "REDACTED"
		}
		v.Machines[i] = m
	}
	return v
}

func printShow(a *app, v showView, now time.Time) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if v.Revision != 0 {
		fmt.Fprintf(tw, "Live:\t%s/%s revision %d ('mms put --revision %d' publishes only over this one)\n",
			termtext.Escape(v.Bucket), termtext.Escape(v.Key), v.Revision, v.Revision)
	}
	if v.Compressed {
		fmt.Fprintf(tw, "Format:\t%s, compressed (agents older than compressed specs refuse it)\n", v.Format)
	} else {
		fmt.Fprintf(tw, "Format:\t%s\n", v.Format)
	}
	if v.Format == packer.FormatV2.String() {
		fmt.Fprintf(tw, "Serial:\t%d\n", v.Serial)
	}
	if v.IssuedAt != nil {
		fmt.Fprintf(tw, "Issued:\t%s (%s ago)\n", v.IssuedAt.Format(time.RFC3339), now.Sub(*v.IssuedAt).Round(time.Second))
	}
	switch {
	case v.Expires == nil:
		fmt.Fprintf(tw, "Expires:\tnever\n")
	case v.Expires.Before(now):
		fmt.Fprintf(tw, "Expires:\t%s (EXPIRED %s ago)\n", v.Expires.Format(time.RFC3339), now.Sub(*v.Expires).Round(time.Second))
	default:
		fmt.Fprintf(tw, "Expires:\t%s (in %s)\n", v.Expires.Format(time.RFC3339), v.Expires.Sub(now).Round(time.Second))
	}
	fmt.Fprintf(tw, "Signed by:\t%s\n", termtext.Escape(signedBy(v)))
	fmt.Fprintf(tw, "Digest:\tsha256:%s\n", v.Digest)
	fmt.Fprintf(tw, "Machines:\t%d\n", len(v.Machines))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(v.Machines) == 0 {
		return nil
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tCHECKSUM\tMATCH")
	for _, m := range v.Machines {
		match := m.Match
		if match == "" {
			match = "(every node)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", termtext.Escape(m.Name), termtext.Escape(m.Source), termtext.Escape(short(m.Checksum)), termtext.Escape(match))
	}
	return tw.Flush()
}

// signedBy describes the signatures: the key ids claimed, a v1 signature
// (which names no key), or none.
func signedBy(v showView) string {
	switch {
	case len(v.KeyIDs) > 0:
		s := strings.Join(v.KeyIDs, ", ") + " (claimed; run mms verify)"
		if n := v.Signatures - len(v.KeyIDs); n > 0 {
			s += fmt.Sprintf(", and %d signature%s without a key id", n, plural(n))
		}
		return s
	case v.Signatures > 0 && v.Format == packer.FormatV1.String():
		return "a v1 signature (v1 names no key: check it with 'mms verify SPEC KEY')"
	case v.Signatures > 0:
		return fmt.Sprintf("%d signature%s without a key id (run mms verify)", v.Signatures, plural(v.Signatures))
	}
	return "none (unsigned)"
}

// short abbreviates a hex digest for tables.
func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}
