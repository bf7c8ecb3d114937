package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

type putOptions struct {
	bucket   string
	key      string
	create   bool
	replicas int
	force    bool
	revision uint64
	// beforeWrite, when set, runs between reading the current revision and
	// writing; tests use it to race another writer.
	beforeWrite func()
}

func (a *app) newPutCmd() *cobra.Command {
	var o putOptions
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "put [SPEC|-]",
		Short: "Publish a spec envelope to the NATS Key-Value bucket agents watch",
		Long: `Publish a spec envelope to the NATS Key-Value bucket agents watch.

The envelope is read from SPEC or stdin, trailing whitespace trimmed, and
refused unless it parses as a spec envelope. The write is a compare-and-set
on the key's current revision, so when two operators publish at once one of
them gets an error instead of silently overwriting the other. A v2 spec
whose serial is not above the current one's is refused too (agents would
ignore it); --force skips that check, not the compare-and-set. A serial
more than a day ahead of the current Unix time is always refused (agents
refuse it). When the current spec's serial is itself that far ahead, put
says how to recover: a spec packed with --reset-history.

'nats kv put MACHINES machines' works as well; mms put adds the checks.`,
		Example: `  mms pack machines.json --key-file ops.key | mms put
  mms put spec.json --server nats://nats1:4222,nats://nats2:4222 --creds ops.creds
  mms put spec.json --create      # create the MACHINES bucket first if missing`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "-"
			if len(args) == 1 {
				path = args[0]
			}
			data, err := a.readSpecArg(path)
			if err != nil {
				return err
			}
			next, err := packer.Inspect(data)
			if err != nil {
				return fmt.Errorf("refusing to put: %w", err)
			}
			if err := checkPutSerial(next, time.Now()); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout)
			defer cancel()
			nc, err := nf.connect(ctx, a, "mms put")
			if err != nil {
				return err
			}
			defer nc.Close()
			return a.put(ctx, nc, data, next, o)
		},
	}
	f := cmd.Flags()
	nf.register(f)
	f.StringVar(&o.bucket, "bucket", "MACHINES", "Key-Value bucket")
	f.StringVar(&o.key, "key", "machines", "key in the bucket")
	f.BoolVar(&o.create, "create", false, "create the bucket when it does not exist")
	f.IntVar(&o.replicas, "replicas", 1, "replicas when creating the bucket")
	f.BoolVar(&o.force, "force", false, "publish even if the serial is not above the current spec's")
	f.Uint64Var(&o.revision, "revision", 0, "only publish if the key is at this revision (the one you reviewed)")
	return cmd
}

// checkPutSerial refuses a v2 spec whose serial agents refuse: above the
// serial ceiling (the current Unix time plus a day). --force does not skip
// it: no agent would accept the spec.
func checkPutSerial(next *packer.Opened, now time.Time) error {
	if next.Format != packer.FormatV2 {
		return nil
	}
	if err := spec.CheckSerial(next.Spec.Serial, now); err != nil {
		return fmt.Errorf("refusing to put: %w; re-pack without --serial (the default is the current time)", err)
	}
	return nil
}

// checkOlderSerial refuses a spec whose serial is not above the current
// one's, saying what to publish instead. When the current
// serial is itself above the ceiling (a bad serial accepted before agents
// checked it), the only way forward is a reset spec; otherwise the next
// serial, which cannot overflow since the current one is below the
// ceiling. A reset spec over a serial above the ceiling is let through.
func checkOlderSerial(next, prev *packer.Opened, o putOptions, now time.Time) error {
	where := o.bucket + "/" + o.key
	if prev.Spec.Serial > spec.SerialCeiling(now) {
		if next.Spec.ResetHistory {
			return nil
		}
		return fmt.Errorf("refusing to put serial %d: %s holds serial %d, above the current Unix time plus %s, which agents no longer accept; agents that accepted it ignore every lower serial: re-pack with --reset-history (those agents accept it, the others take it as a normal spec)",
			next.Spec.Serial, where, prev.Spec.Serial, spec.MaxSerialAhead)
	}
	return fmt.Errorf("refusing to put serial %d: %s holds serial %d and agents ignore older or equal serials; re-pack (the default serial is the current time) or pass --serial %d",
		next.Spec.Serial, where, prev.Spec.Serial, prev.Spec.Serial+1)
}

func (a *app) put(ctx context.Context, nc natsConn, data []byte, next *packer.Opened, o putOptions) error {
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.KeyValue(ctx, o.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && o.create {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       o.bucket,
			Description:  "mms signed desired state",
			History:      5,
			MaxValueSize: packer.MaxEnvelopeSize,
			Replicas:     o.replicas,
		})
		if err == nil {
			fmt.Fprintf(a.stderr, "created bucket %s\n", o.bucket)
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("bucket %s does not exist on %s: create it with --create (or start an agent with the embedded server)", o.bucket, nc.ConnectedUrlRedacted())
	}
	if err != nil {
		return nc.explain(fmt.Errorf("open bucket %s: %w", o.bucket, err))
	}

	var rev uint64
	cur, err := kv.Get(ctx, o.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nc.explain(fmt.Errorf("read %s/%s: %w", o.bucket, o.key, err))
	default:
		rev = cur.Revision()
		if prev, perr := packer.Inspect(cur.Value()); perr == nil {
			if prev.Digest == next.Digest && prev.Spec.Serial == next.Spec.Serial {
				fmt.Fprintf(a.stdout, "%s/%s already holds this spec (revision %d, %s serial %d); nothing to do\n", o.bucket, o.key, rev, next.Format, next.Spec.Serial)
				return nil
			}
			if !o.force && next.Format == packer.FormatV2 && prev.Format == packer.FormatV2 && next.Spec.Serial <= prev.Spec.Serial {
				if err := checkOlderSerial(next, prev, o, time.Now()); err != nil {
					return err
				}
			}
		}
	}

	if o.revision != 0 && o.revision != rev {
		return fmt.Errorf("%s/%s is at revision %d, not %d as --revision expects: review the current spec with 'mms show' first", o.bucket, o.key, rev, o.revision)
	}
	if o.beforeWrite != nil {
		o.beforeWrite()
	}
	var newRev uint64
	if rev == 0 {
		newRev, err = kv.Create(ctx, o.key, data)
	} else {
		newRev, err = kv.Update(ctx, o.key, data, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%s/%s changed while publishing (it was at revision %d): someone else published; check with 'mms show' and retry", o.bucket, o.key, rev)
	}
	if err != nil {
		return nc.explain(fmt.Errorf("write %s/%s: %w", o.bucket, o.key, err))
	}
	desc := fmt.Sprintf("%s spec", next.Format)
	if next.Format == packer.FormatV2 {
		desc += fmt.Sprintf(" serial %d", next.Spec.Serial)
	}
	fmt.Fprintf(a.stdout, "put %s/%s revision %d: %s, %d machine%s, at %s\n",
		o.bucket, o.key, newRev, desc, len(next.Spec.Machines), plural(len(next.Spec.Machines)), time.Now().UTC().Format(time.RFC3339))
	return nil
}
