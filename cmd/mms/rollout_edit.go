package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// rolloutEditOptions are the flags of `mms rollout pause|resume|undo`.
type rolloutEditOptions struct {
	nats        natsFlags
	bucket, key string
	keyFiles    []string
	trustedKeys string
	publicKeys  []string
	threshold   int
}

// rolloutEdit is one signed edit of an entry of the live spec: it returns
// the entry as it should be and says what changed, or an error when the
// edit does not apply.
type rolloutEdit func(ctx context.Context, e editContext) (spec.Machine, string, error)

// editContext is what an edit sees: the live spec, the entry, and the
// key's history to look back in.
type editContext struct {
	live  *packer.Opened
	entry spec.Machine
	rev   uint64
	kv    jetstream.KeyValue
	key   string
	open  func(data []byte) (*packer.Opened, error) // verifies with the trusted keys
	names func(machine, checksum string) string     // a version's name, from the nodes' reports
}

// newRolloutEditCmds returns pause, resume and undo.
func (a *app) newRolloutEditCmds() []*cobra.Command {
	const trust = `It reads the live spec and its revision, verifies its signatures with the
trusted keys (--trusted-keys or --public-key; default the public keys of
--key-file: it re-signs only what those keys signed), makes the edit,
signs the result with --key-file and a new serial (the current Unix time,
or the live serial plus one), and writes it only if the key is still at
the revision it read (as 'mms put --revision'). Everything else in the
spec stays as it was, its expiry included. There is no control server:
the signed spec stays the only authority, and every agent applies the
edit as it applies any spec.`
	cmds := []*cobra.Command{
		{
			Use:   "pause MACHINE",
			Short: "Pause the rollout of an entry of the live spec: no node starts the new version",
			Long: `Pause sets rollout.paused in the entry MACHINE of the live spec: no node
starts the new version, whatever its wave (a node already installing it, or
running it under its health gate, finishes). 'mms rollout resume MACHINE'
lets the waves go on; 'mms rollout undo MACHINE' goes back to the version
before.

` + trust,
			Example: `  mms rollout pause web --key-file ops.key
  mms rollout status --machine web`,
		},
		{
			Use:   "resume MACHINE",
			Short: "Resume a paused rollout: the waves go on",
			Long: `Resume clears rollout.paused in the entry MACHINE of the live spec: the
rollout goes on where it stopped, wave by wave.

` + trust,
			Example: `  mms rollout resume web --key-file ops.key`,
		},
		{
			Use:   "undo MACHINE",
			Short: "Put back the entry as it was before its version changed, from the spec key's history",
			Long: `Undo replaces the entry MACHINE of the live spec with the entry as it was in
the latest earlier spec of the key's history that verifies with the trusted
keys and pins another version of it: its source, checksums, matcher, health
gate and rollout policy. The nodes then go back to that version the way
they go to any version: in the waves of its rollout policy, each under its
health gate. The history is the spec bucket's (MACHINES keeps the last 5
values of the key); an entry first added by the live spec has no earlier
version to go back to.

` + trust,
			Example: `  mms rollout undo web --key-file ops.key
  mms rollout status --machine web --watch`,
		},
	}
	edits := []rolloutEdit{pauseEdit(true), pauseEdit(false), undoEdit}
	for i, cmd := range cmds {
		var o rolloutEditOptions
		edit := edits[i]
		cmd.Args = cobra.ExactArgs(1)
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			return a.editRollout(cmd.Context(), o, args[0], edit)
		}
		f := cmd.Flags()
		o.nats.registerClient(cmd, f)
		f.StringArrayVar(&o.keyFiles, "key-file", nil, "sign with the private key in `FILE` (repeatable; required)")
		f.StringVar(&o.trustedKeys, "trusted-keys", "", "verify the live spec with the hex public keys in `FILE` (default: those of --key-file)")
		f.StringArrayVar(&o.publicKeys, "public-key", nil, "verify the live spec with this hex public key (repeatable)")
		f.IntVar(&o.threshold, "threshold", 1, "distinct trusted keys that must have signed the live spec")
		f.StringVar(&o.bucket, "bucket", "MACHINES", "the Key-Value bucket of the live spec")
		f.StringVar(&o.key, "key", "machines", "the key of the live spec in --bucket")
	}
	return cmds
}

// pauseEdit sets (or clears) rollout.paused.
func pauseEdit(pause bool) rolloutEdit {
	return func(_ context.Context, e editContext) (spec.Machine, string, error) {
		m := e.entry
		if m.Rollout == nil {
			return m, "", fmt.Errorf("%s has no rollout policy in the live spec (%s): there is nothing to pause or resume", m.Name, e.label())
		}
		if m.Rollout.Paused == pause {
			return m, "", fmt.Errorf("%s's rollout is %s already in the live spec (%s, revision %d)", m.Name, map[bool]string{true: "paused", false: "not paused"}[pause], e.label(), e.rev)
		}
		r := *m.Rollout
		r.Paused = pause
		m.Rollout = &r
		if pause {
			return m, fmt.Sprintf("paused: no node starts %s; nodes under way finish (mms rollout resume %s continues)", e.version(m), m.Name), nil
		}
		return m, fmt.Sprintf("resumed: the waves of %s go on", e.version(m)), nil
	}
}

// undoEdit takes the entry from the latest earlier spec in the key's
// history that verifies and pins another version of it.
func undoEdit(ctx context.Context, e editContext) (spec.Machine, string, error) {
	hist, err := e.kv.History(ctx, e.key)
	if err != nil {
		return spec.Machine{}, "", fmt.Errorf("read the history of %s: %w", e.key, err)
	}
	var unverified []string
	for _, h := range slices.Backward(hist) {
		if h.Revision() >= e.rev || h.Operation() != jetstream.KeyValuePut {
			continue
		}
		old, err := e.open(h.Value())
		if err != nil {
			unverified = append(unverified, fmt.Sprintf("revision %d (%v)", h.Revision(), err))
			continue
		}
		i := slices.IndexFunc(old.Spec.Machines, func(m spec.Machine) bool { return m.Name == e.entry.Name })
		if i < 0 {
			continue
		}
		m := old.Spec.Machines[i]
		if strings.EqualFold(m.Checksum, e.entry.Checksum) && strings.EqualFold(m.VerifyChecksum, e.entry.VerifyChecksum) {
			continue
		}
		return m, fmt.Sprintf("back to %s, as revision %d (%s) had it; was %s", e.version(m), h.Revision(), manager.SpecLabel(old.Format.String(), old.Spec.Serial, old.Digest), e.version(e.entry)), nil
	}
	msg := fmt.Sprintf("no earlier spec in the history of %s (%d value%s kept) pins another version of %s", e.key, len(hist), plural(len(hist)), e.entry.Name)
	if len(unverified) > 0 {
		msg += "; these do not verify with the trusted keys: " + strings.Join(unverified, ", ")
	}
	return spec.Machine{}, "", errors.New(msg)
}

// label names the live spec.
func (e editContext) label() string {
	return manager.SpecLabel(e.live.Format.String(), e.live.Spec.Serial, e.live.Digest)
}

// version names the version entry m pins: "2.0.0 (3f2a8c1b2d3e)", or the
// checksum when no node reported running it.
func (e editContext) version(m spec.Machine) string {
	return fleet.Version{Name: e.names(m.Name, m.Checksum), Checksum: strings.ToLower(m.Checksum)}.String()
}

// editRollout reads the live spec, verifies it, applies edit to the entry
// machine, signs the result and writes it with a compare-and-set on the
// revision read.
func (a *app) editRollout(parent context.Context, o rolloutEditOptions, machine string, edit rolloutEdit) error {
	if len(o.keyFiles) == 0 {
		return errors.New("--key-file is required: the edit is a new signed spec")
	}
	var keys []ed25519.PrivateKey
	var pubs []string
	for _, p := range o.keyFiles {
		k, err := a.readPrivateKeyFile(p)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		pubs = append(pubs, packer.FormatPublicKey(k.Public().(ed25519.PublicKey)))
	}
	if o.trustedKeys != "" || len(o.publicKeys) > 0 {
		pubs = o.publicKeys
	}
	trust, err := resolveTrust(pubs, o.trustedKeys, o.threshold, false, false)
	if err != nil {
		return err
	}
	nc, err := o.nats.connect(parent, a, "mms rollout")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(parent, o.nats.timeout)
	defer cancel()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, o.bucket)
	if err != nil {
		return nc.explain(fmt.Errorf("open bucket %s: %w", o.bucket, err))
	}
	cur, err := kv.Get(ctx, o.key)
	if err != nil {
		return nc.explain(fmt.Errorf("read the live spec %s/%s: %w", o.bucket, o.key, err))
	}
	now := time.Now().UTC().Truncate(time.Second)
	open := func(data []byte) (*packer.Opened, error) {
		return packer.Open(data, packer.OpenOptions{Trusted: trust.Keys(), Threshold: trust.Threshold(), Now: func() time.Time { return now }})
	}
	live, err := open(cur.Value())
	if err != nil {
		return fmt.Errorf("the live spec (%s/%s revision %d) does not verify: %w; an edit re-signs only a spec the trusted keys signed (--trusted-keys)", o.bucket, o.key, cur.Revision(), err)
	}
	i := slices.IndexFunc(live.Spec.Machines, func(m spec.Machine) bool { return m.Name == machine })
	if i < 0 {
		names := make([]string, len(live.Spec.Machines))
		for j, m := range live.Spec.Machines {
			names[j] = m.Name
		}
		return fmt.Errorf("the live spec (%s) has no entry %q; it has %s", manager.SpecLabel(live.Format.String(), live.Spec.Serial, live.Digest), machine, strings.Join(names, ", "))
	}
	versions := func(string, string) string { return "" }
	if t, err := fleet.Read(ctx, js, fleet.Options{StatusOnly: true}); err == nil {
		versions = t.Version
	}
	e := editContext{live: live, entry: live.Spec.Machines[i], rev: cur.Revision(), kv: kv, key: o.key, open: open, names: versions}
	m, desc, err := edit(ctx, e)
	if err != nil {
		return errors.New(termtext.Escape(err.Error()))
	}
	next := &spec.Spec{Serial: max(uint64(now.Unix()), live.Spec.Serial+1), IssuedAt: now, Expires: live.Spec.Expires,
		Machines: slices.Clone(live.Spec.Machines)}
	next.Machines[i] = m
	if err := spec.CheckSerial(next.Serial, now); err != nil {
		return fmt.Errorf("the next serial after the live one: %w", err)
	}
	if err := next.Validate(spec.ValidateOptions{AllowHTTP: true}); err != nil {
		return fmt.Errorf("the edited spec is not valid, nothing written:\n%w", err)
	}
	env, err := packer.Seal(packer.FormatV2, next, keys...)
	if err != nil {
		return fmt.Errorf("seal the edited spec: %w", err)
	}
	rev, err := kv.Update(ctx, o.key, env, cur.Revision())
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%s/%s changed since it was read at revision %d: someone else published; run it again", o.bucket, o.key, cur.Revision())
	}
	if err != nil {
		return nc.explain(fmt.Errorf("write %s/%s: %w", o.bucket, o.key, err))
	}
	fmt.Fprintf(a.stdout, "%s %s\n", termtext.Escape(machine), termtext.Escape(desc))
	fmt.Fprintf(a.stdout, "put %s/%s revision %d (was %d): serial %d\n", o.bucket, o.key, rev, cur.Revision(), next.Serial)
	return nil
}
