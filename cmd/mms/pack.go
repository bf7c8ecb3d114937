package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

type packOptions struct {
	keyFiles  []string
	format    string
	serial    uint64
	expires   time.Duration
	unsigned  bool
	allowHTTP bool
	reset     bool
	archives  string
	compress  string
}

func (a *app) newPackCmd() *cobra.Command {
	var o packOptions
	cmd := &cobra.Command{
		Use:   "pack MACHINES [KEY]",
		Short: "Validate and sign a machines file into a spec envelope",
		Long: `Validate and sign a machines file into a spec envelope.

MACHINES is a JSON array (Choria's machines.json) or a YAML list of entries:

  - name: facts                      # letters, digits, _ - . (up to 200)
    source: https://repo.example.net/facts-1.0.0.tar.gz   # or nats://BUCKET/OBJECT
    checksum: <sha256 of the archive>
    verify_checksum: <sha256 of its SHA256SUMS>
    match: identity('^web') && has_command('facter')      # optional
    hold: identity('^web3[.]')       # optional: these nodes keep what they run
    health:                          # optional: the new version's gate
      states: [RUNNING]              #   healthy once it enters one of these
      within: 60s                    #   ... this long after it starts
      fail_states: [FAILED]          #   unhealthy at once in one of these
    rollout:                         # optional (needs health): waves
      waves: ["1", "10%", "100%"]    #   cumulative counts or shares
      pause: 30s                     #   after a wave is healthy
      max_failed: 1                  #   failure budget: a count or "10%"
      min_done: 20                   #   with a share: judged from 20 done
      paused: false                  #   mms rollout pause|resume set it

Every entry is validated before anything is signed; a bad entry fails with
its index, name and field. With --archives DIR (where 'mms archive create
--out' writes), the archive of each entry with a health gate is found there
by its checksum and its machine.yaml must have the states the gate names. The signed envelope is printed on stdout and
nothing else, so it can be piped into 'mms put' or 'nats kv put'.

The private key (hex, as written by 'mms keys') comes from --key-file
(repeat it for several signatures), else the KEY environment variable, else
the KEY argument. The argument is accepted for compatibility with Choria's
mms, but command lines are visible to every user of the machine: prefer
--key-file.

--format v2 (the default) writes a DSSE envelope with a serial, issue time
and optional expiry; agents refuse older serials, and serials more than a
day ahead of the current Unix time (so does pack: a serial in milliseconds
or 2^64-1 would make agents ignore every later spec). --format v1 writes
Choria's format, which has no serial: mms agents accept it only with
--allow-legacy-spec. It refuses what Choria's agents cannot use: size,
auth, health, rollout, hold, and matchers using get_fact() or facts.

A v2 spec whose envelope would be larger than the 1 MiB agents read (and
NATS carries by default) is compressed (--compress auto, the default): its
payload is zstd-compressed inside the signed envelope, so ten thousand
entries fit. Agents of this version and later read it; older agents refuse
it, naming its payloadType. --compress always compresses any spec, never
keeps it plain (a spec too large is then refused here). v1 specs are never
compressed.

--reset-history writes a recovery spec for nodes that accepted a serial
above that ceiling before it was checked (or while their clock was wrong):
such a node accepts it although its serial is lower, if it was issued after
the bad serial was accepted. Every other node takes it as a normal spec, so
publish it to the whole fleet. (A node's operator can also reset one node
with 'mms agent --reset-spec-history SERIAL'.)`,
		Example: `  mms pack machines.json --key-file ops.key | mms put
  mms pack machines.yaml --key-file ops.key --key-file sec.key --expires 720h > spec.json
  mms pack machines.json --format v1 --key-file ops.key | nats --context mms kv put MACHINES machines
  mms pack machines.json --key-file ops.key --reset-history | mms put --force`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.pack(cmd, args, o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.keyFiles, "key-file", nil, "private key file (repeatable: one signature per key)")
	f.StringVar(&o.format, "format", "v2", "envelope format: v2 (DSSE, serial and expiry) or v1 (Choria)")
	f.Uint64Var(&o.serial, "serial", 0, "spec serial (default: the current unix time in seconds)")
	f.DurationVar(&o.expires, "expires", 0, "expire the spec after this long, e.g. 720h (v2 only; default never)")
	f.BoolVar(&o.unsigned, "unsigned", false, "write an unsigned envelope (only agents started with --insecure-unsigned accept it)")
	f.BoolVar(&o.allowHTTP, "allow-http", false, "allow http:// sources (agents must allow them too)")
	f.StringVar(&o.archives, "archives", "", "check each health gate's states against the machine.yaml of the entry's archive in `DIR`")
	f.StringVar(&o.compress, "compress", "auto", "compress the v2 payload: auto (only a spec that would not fit in 1 MiB), always or never")
	f.BoolVar(&o.reset, "reset-history", false, "write a recovery spec that nodes holding a serial beyond the current time plus a day accept although its serial is lower (v2 only)")
	return cmd
}

func (a *app) pack(cmd *cobra.Command, args []string, o packOptions) error {
	format, err := parseFormat(o.format)
	if err != nil {
		return err
	}
	if format == packer.FormatV1 && o.expires != 0 {
		return errors.New("--expires needs --format v2: v1 envelopes carry no expiry")
	}
	if format == packer.FormatV1 && o.reset {
		return errors.New("--reset-history needs --format v2: v1 envelopes have no serial to reset")
	}
	compression, err := parseCompression(o.compress)
	if err != nil {
		return err
	}
	if format == packer.FormatV1 && compression == packer.CompressAlways {
		return errors.New("--compress always needs --format v2: Choria's agents read v1 specs plain")
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := spec.CheckSerial(o.serial, now); err != nil {
		return fmt.Errorf("--%w", err)
	}
	if o.expires < 0 {
		return errors.New("--expires must be positive")
	}
	keys, err := a.packKeys(cmd, args, o)
	if err != nil {
		return err
	}
	if len(keys) == 0 && !o.unsigned {
		return errors.New("no signing key: give --key-file, set KEY, or pass --unsigned to write an unsigned spec")
	}
	if len(keys) > 0 && o.unsigned {
		return errors.New("--unsigned conflicts with the signing keys given")
	}
	if format == packer.FormatV1 && len(keys) > 1 {
		return errors.New("v1 envelopes carry one signature: give one key or use --format v2")
	}

	data, err := os.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("read machines: %w", err)
	}
	machines, err := spec.ParseMachines(data)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	s := &spec.Spec{IssuedAt: now, Machines: machines, ResetHistory: o.reset}
	if format == packer.FormatV2 {
		s.Serial = uint64(now.Unix())
		if o.serial != 0 {
			s.Serial = o.serial
		}
		if o.expires > 0 {
			s.Expires = now.Add(o.expires)
		}
	}
	if err := s.Validate(spec.ValidateOptions{AllowHTTP: o.allowHTTP, Legacy: format == packer.FormatV1}); err != nil {
		return fmt.Errorf("%s: nothing signed:\n%w", args[0], err)
	}
	if o.archives != "" {
		if err := checkHealthStates(cmd.Context(), s.Machines, o.archives); err != nil {
			return fmt.Errorf("%s: nothing signed:\n%w", args[0], err)
		}
	}
	env, err := packer.SealWith(format, s, packer.SealOptions{Compression: compression}, keys...)
	if err != nil {
		return fmt.Errorf("seal spec: %w", err)
	}
	if len(env) > packer.MaxEnvelopeSize {
		how := "compressed"
		if format == packer.FormatV1 || compression == packer.CompressNever {
			how = "plain (v1 specs, and v2 with --compress never, are not compressed)"
		}
		return fmt.Errorf("%s: nothing written: the signed spec of %d entries is %d bytes %s, and agents read at most %d: "+
			"split the machines over fewer entries or let entries share archives", args[0], len(s.Machines), len(env), how, packer.MaxEnvelopeSize)
	}
	if o, err := packer.Inspect(env); err == nil && o.Compressed && compression == packer.CompressAuto {
		a.log.Info("the spec is compressed to fit in one envelope; agents older than compressed specs refuse it", "entries", len(s.Machines), "bytes", len(env))
	}
	if _, err := fmt.Fprintf(a.stdout, "%s\n", env); err != nil {
		return err
	}
	if len(s.Machines) == 0 {
		a.log.Warn("the spec lists no machines: agents with purging enabled will remove every machine they manage")
	}
	if o.reset && s.Serial < uint64(now.Unix()) {
		a.log.Warn(fmt.Sprintf("--reset-history with --serial %d, below the current time (%d): the nodes it resets (those holding a serial above the ceiling) then hold serial %d, so they accept every spec signed with a higher serial, older specs signed since then included: whoever can write the spec key could replay one to them. Nodes running a serial above %d ignore this spec. Without --serial a reset spec gets the current time, above every spec signed so far",
			s.Serial, now.Unix(), s.Serial, s.Serial))
	}
	if size := nodestatus.EstimateSize(s.Machines); size > statusWarnSize {
		a.log.Warn(fmt.Sprintf("the spec's %d entries make a node's status document about %d bytes, near the %d bytes an agent writes: agents that run most of them trim their documents (reasons and matchers first, then skipped entries, machines without errors, then the last entries) and say so in them",
			len(s.Machines), size, nodestatus.MaxWrittenSize))
	}
	return nil
}

// statusWarnSize is the estimated status document size above which pack
// warns: three quarters of what an agent writes.
const statusWarnSize = nodestatus.MaxWrittenSize * 3 / 4

// parseCompression reads --compress.
func parseCompression(s string) (packer.Compression, error) {
	switch s {
	case "auto":
		return packer.CompressAuto, nil
	case "always":
		return packer.CompressAlways, nil
	case "never":
		return packer.CompressNever, nil
	}
	return 0, fmt.Errorf("--compress %q: want auto, always or never", s)
}

// packKeys gathers the signing keys: --key-file, else $KEY, else the
// positional argument (with a warning: argv is visible to every user).
func (a *app) packKeys(cmd *cobra.Command, args []string, o packOptions) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for _, p := range o.keyFiles {
		k, err := a.readPrivateKeyFile(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		if len(args) > 1 {
			return nil, errors.New("give the key either with --key-file or as an argument, not both")
		}
		return keys, nil
	}
	text, from := os.Getenv("KEY"), "environment variable KEY"
	if len(args) > 1 {
		a.log.Warn("the private key was given on the command line, where other users and shell history can read it; use --key-file")
		text, from = args[1], "KEY argument"
	}
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	k, err := packer.ParsePrivateKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return []ed25519.PrivateKey{k}, nil
}

func parseFormat(s string) (packer.Format, error) {
	switch strings.ToLower(s) {
	case "v2", "2":
		return packer.FormatV2, nil
	case "v1", "1":
		return packer.FormatV1, nil
	}
	return 0, fmt.Errorf("--format %q: want v2 or v1", s)
}
