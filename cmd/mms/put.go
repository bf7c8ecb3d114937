package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/provision"
	"github.com/mms-io/mms/spec"
)

type putOptions struct {
	bucket   string
	key      string
	create   bool
	replicas int
	force    bool
	revision uint64
	// publicKeys, trustedKeys and threshold, when keys are given, verify
	// the spec's signatures before it is written.
	publicKeys  []string
	trustedKeys string
	threshold   int
	// wait, when positive, follows the agents' status documents after the
	// write until every reporting agent applied the spec or failed.
	wait time.Duration
	// beforeWrite, when set, runs between reading the current revision and
	// writing; tests use it to race another writer.
	beforeWrite func()
	// again is the connection flags the command was given, for the
	// commands its messages suggest (natsFlags.again).
	again string
}

func (a *app) newPutCmd() *cobra.Command {
	var o putOptions
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "put [SPEC|-]",
		Short: "Publish a spec envelope to the NATS Key-Value bucket agents watch",
		Long: `Publish a spec envelope to the NATS Key-Value bucket agents watch.

The envelope is read from SPEC or stdin, trailing whitespace trimmed, and
refused unless it parses as a spec envelope and has not expired. With
--public-key or --trusted-keys its signatures are verified first, as an
agent with those keys would (--threshold of them must have signed);
without them, mms put reads the agents' status documents to find the
agents that will reject it (they trust none of the keys the spec claims
to be signed by, or too few, or refuse v1 specs): it warns when some
will, and refuses the spec when every agent that reports will (--force
publishes it anyway).

A serial more than a day ahead of the current Unix time is always refused
(agents refuse it). When the current spec's serial is itself that far
ahead, put says how to recover: a spec packed with --reset-history.

The write is a compare-and-set on the key's current revision, so when two
operators publish at once one of them gets an error instead of silently
overwriting the other. A v2 spec whose serial is not above the current
one's is refused too (agents would ignore it); --force skips that check,
not the compare-and-set. Two packs in one second take the same serial
(the default is the current Unix time): put says so and names the serial
to pack with. The same spec signed again (the same serial and machines,
other signatures) replaces the one in the key; the same bytes are not
written again.

--wait DURATION then follows the status documents for up to DURATION,
whatever --timeout is (--timeout bounds the connect and the write, not
the wait), printing progress on stderr ("serial 12: 2/3 applied, 1 failed:
web3: web failed: install: sha256 mismatch"; during a rollout also the
wave, the pause, a paused rollout, the failure budget used and who is
pending: "serial 12: 3/10 applied; web wave 2 of 3 pausing 14s, max_failed
1: 0 of 1 used; pending: web4, web5"), until every agent that reports its
status applied the spec or failed. A rollout is followed to its end: every
wave healthy, or its halt.

Exit codes:
  0  every agent applied the spec (some may have failed a rollout's new
     version within its failure budget, rollout.max_failed: each rolled
     back on its own, and is named)
  1  the put itself failed (a refused spec, NATS unreachable, ...)
  2  an agent rejected the spec or failed an entry, or a rollout halted;
     each is named with why (also: no agent reports its status)
  3  DURATION ran out first; each agent not done is named, with where
     each rollout is

'nats --context mms kv put MACHINES machines' works as well (the context
the agent writes for its embedded server, or yours); mms put adds the
checks.`,
		Example: `  mms pack machines.json --key-file ops.key | mms put --wait 2m
  mms put spec.json --trusted-keys fleet.pub --server nats://nats1:4222,nats://nats2:4222 --creds ops.creds
  mms put spec.json --create      # create the MACHINES bucket first if missing (as mms init would)`,
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
			next, err := a.checkPut(data, o, time.Now())
			if err != nil {
				return err
			}
			if err := checkPutSerial(next, time.Now()); err != nil {
				return err
			}
			// The connection lives as long as the command (--wait may
			// outlast --timeout); --timeout bounds the connect and the write.
			nc, err := nf.connect(cmd.Context(), a, "mms put")
			if err != nil {
				return err
			}
			o.again = nf.again()
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout)
			defer cancel()
			if len(o.publicKeys) == 0 && o.trustedKeys == "" {
				if err := a.checkAgentsAccept(ctx, nc, next, o.force); err != nil {
					return err
				}
			}
			if err := a.put(ctx, nc, data, next, o); err != nil {
				return err
			}
			if o.wait <= 0 {
				return nil
			}
			return a.waitApplied(cmd.Context(), nc, next, o.wait)
		},
	}
	f := cmd.Flags()
	nf.registerClient(cmd, f)
	f.StringVar(&o.bucket, "bucket", "MACHINES", "Key-Value bucket")
	f.StringVar(&o.key, "key", "machines", "key in the bucket")
	f.BoolVar(&o.create, "create", false, "create the bucket when it does not exist, as 'mms init' would")
	f.IntVar(&o.replicas, "replicas", 0, "replicas when creating the bucket (default 3 on a cluster, 1 on a single server)")
	f.BoolVar(&o.force, "force", false, "publish even if agents will ignore or reject it: a serial not above the current spec's, or a spec every reporting agent will reject")
	f.Uint64Var(&o.revision, "revision", 0, "only publish if the key is at this revision (the one you reviewed with 'mms show')")
	f.StringArrayVar(&o.publicKeys, "public-key", nil, "verify the signatures with this hex public key before writing (repeatable)")
	f.StringVar(&o.trustedKeys, "trusted-keys", "", "verify the signatures with the hex public keys in `FILE` before writing")
	f.IntVar(&o.threshold, "threshold", 1, "distinct keys of --public-key/--trusted-keys that must have signed")
	f.DurationVar(&o.wait, "wait", 0, "after writing, wait up to `DURATION` until every reporting agent applied the spec or failed")
	return cmd
}

// checkPut decodes the envelope and refuses what no agent would accept:
// an envelope that does not decode, an expired spec, and, when keys are
// given, one whose signatures do not verify with them.
func (a *app) checkPut(data []byte, o putOptions, now time.Time) (*packer.Opened, error) {
	next, err := inspectSpec(data, "mms put")
	if err != nil {
		return nil, fmt.Errorf("refusing to put: %w", err)
	}
	if exp := next.Spec.Expires; !exp.IsZero() && !now.Before(exp) {
		return nil, fmt.Errorf("refusing to put serial %d: it expired at %s (%s ago) and every agent rejects an expired spec; re-pack it (mms pack --expires sets a new expiry)",
			next.Spec.Serial, exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second))
	}
	if len(o.publicKeys) == 0 && o.trustedKeys == "" {
		return next, nil
	}
	trust, err := resolveTrust(o.publicKeys, o.trustedKeys, o.threshold, false, true)
	if err != nil {
		return nil, err
	}
	opened, err := packer.Open(data, packer.OpenOptions{Trusted: trust.Keys(), Threshold: trust.Threshold(), AllowV1: true, Now: func() time.Time { return now }})
	if err != nil {
		return nil, fmt.Errorf("refusing to put: %w", err)
	}
	fmt.Fprintf(a.stderr, "verified: signed by %s (%d of %d required)\n", strings.Join(opened.KeyIDs, ", "), len(opened.KeyIDs), trust.Threshold())
	return next, nil
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
	if next.Spec.Serial == prev.Spec.Serial {
		return fmt.Errorf("refusing to put serial %d: %s holds another spec with the same serial (both packed in the same second?), and agents refuse a second spec with a serial they have seen; pack again with --serial %d",
			next.Spec.Serial, where, prev.Spec.Serial+1)
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
		f, ferr := fleetOf(ctx, nc, js, o.bucket, o.replicas)
		if ferr != nil {
			return fmt.Errorf("--create: %w", ferr)
		}
		if err := a.ensure(ctx, nc, js, f, provision.KindSpec, o.bucket); err != nil {
			return err
		}
		kv, err = js.KeyValue(ctx, o.bucket)
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("bucket %s does not exist on %s: create every bucket of the fleet with 'mms init' (or start an agent with the embedded server)", o.bucket, nc.ConnectedUrlRedacted())
	}
	if err != nil {
		return nc.explain(fmt.Errorf("open bucket %s: %w", o.bucket, err))
	}

	var rev uint64
	// resigned: the key holds the same spec (payload) with other
	// signatures, as when it is signed again, with other keys, within the
	// second its serial was taken from.
	resigned := false
	cur, err := kv.Get(ctx, o.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nc.explain(fmt.Errorf("read %s/%s: %w", o.bucket, o.key, err))
	default:
		rev = cur.Revision()
		if prev, perr := packer.Inspect(cur.Value()); perr == nil {
			if prev.Digest == next.Digest && prev.Spec.Serial == next.Spec.Serial {
				if bytes.Equal(cur.Value(), data) {
					fmt.Fprintf(a.stdout, "%s/%s already holds this spec (revision %d, %s serial %d) on %s; nothing to do\n", o.bucket, o.key, rev, next.Format, next.Spec.Serial, nc.describe())
					return nil
				}
				resigned = true
			}
			if !resigned && !o.force && next.Format == packer.FormatV2 && prev.Format == packer.FormatV2 && next.Spec.Serial <= prev.Spec.Serial {
				if err := checkOlderSerial(next, prev, o, time.Now()); err != nil {
					return err
				}
			}
		}
	}

	if o.revision != 0 && o.revision != rev {
		return fmt.Errorf("%s/%s is at revision %d, not %d as --revision expects: review the current spec with 'mms show%s' first", o.bucket, o.key, rev, o.revision, o.again)
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
		return fmt.Errorf("%s/%s changed while publishing (it was at revision %d): someone else published; check with 'mms show%s' and retry", o.bucket, o.key, rev, o.again)
	}
	if err != nil {
		return nc.explain(fmt.Errorf("write %s/%s: %w", o.bucket, o.key, err))
	}
	desc := fmt.Sprintf("%s spec", next.Format)
	if next.Format == packer.FormatV2 {
		desc += fmt.Sprintf(" serial %d", next.Spec.Serial)
	}
	fmt.Fprintf(a.stdout, "put %s/%s revision %d: %s, %d machine%s, at %s, on %s\n",
		o.bucket, o.key, newRev, desc, len(next.Spec.Machines), plural(len(next.Spec.Machines)), time.Now().UTC().Format(time.RFC3339), nc.describe())
	if resigned {
		fmt.Fprintf(a.stdout, "revision %d held the same spec (serial %d, the same machines and times) with other signatures: agents that applied it keep running it, agents that rejected it check these signatures\n", rev, next.Spec.Serial)
	}
	return nil
}

// inspectSpec decodes a signed spec an operator gave cmd (unverified), and
// says how to make one when data is a machines list.
func inspectSpec(data []byte, cmd string) (*packer.Opened, error) {
	next, err := packer.Inspect(data)
	if err != nil {
		if _, perr := spec.ParseMachines(data); perr == nil || looksLikeList(data) {
			return nil, fmt.Errorf("this is a machines list, not a signed spec: pack it first, e.g. mms pack machines.json --key-file ops.key | %s", cmd)
		}
		return nil, err
	}
	return next, nil
}

// looksLikeList reports whether data is a JSON or YAML list, the shape of
// a machines file (a signed spec is an object).
func looksLikeList(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && (t[0] == '[' || t[0] == '-')
}
