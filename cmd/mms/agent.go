package main

import (
	"os"

	"github.com/spf13/cobra"

	machineswatcher "github.com/mms-io/mms/manager/machineswatcher"
	"github.com/mms-io/mms/nodestatus"
)

func (a *app) newAgentCmd() *cobra.Command {
	var o agentOptions
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: the signed spec's machines, plus the compiled-in ones",
		Long: `Run the node agent until interrupted (SIGINT or SIGTERM).

The agent runs every machine under --machines-dir and the machines compiled
into this binary (the manager among them, which installs what the signed
spec in the --bucket/--key KV entry says this node should run). It verifies
specs with the trusted public keys: give --public-key HEX (repeatable) or
--trusted-keys FILE (one hex key per line, '#' comments), and --threshold
to require several signatures. A binary built with
-ldflags "-X github.com/mms-io/mms/manager.PublicKey=HEX[,HEX…]" trusts those
keys when none is given ('mms plugins' shows them). Without any key it
refuses to start, unless --insecure-unsigned says to run specs nobody
signed; even then only on a NATS server that requires authentication (the
embedded one does), since whoever can write the spec runs any command on
this node.

NATS: without --server (or --context) the agent starts its own NATS server
on --listen (default 127.0.0.1:4222, loopback only; port 0 picks a free
port) with its store under the state directory (JetStream capped at 1 GiB),
and creates what a single-node setup needs: the --bucket KV bucket (history
5, values up to 1 MiB, 16 MiB in all), the CHORIA_MACHINE events stream
(choria.machine.>, 24 h, 256 MiB) and the MACHINES_STATUS bucket (64 MiB).
Every client must log in: the agent generates a user and password once and
keeps them with the URL in <state>/nats-context.json (0600), a nats CLI
context through which the mms commands on this machine find the server by
themselves ('mms put', 'mms status': no flag for the default state
directory, --state-dir DIR for another). The agent of the default state
directory also writes the nats CLI context "mms" (0600), so that
'nats --context mms kv ls' works; it never replaces a context it did not
write. It prints the commands that archive a machine into the server (an
object store) and sign and publish a spec.
With --server the agent is a client of your NATS: it creates nothing, writes
only its own status key, and keeps retrying while NATS is unreachable; its
installed machines run meanwhile.

Status: the agent keeps a status document in the MACHINES_STATUS KV bucket
under a key derived from --identity (the identity itself when it is a valid
key): its spec serial, machines and their states, NATS health and last
error. It is rewritten on change (at most 4 times a second) and every
--status-interval. Read them all with 'mms status'.

Directories (created 0700 when missing): the state directory is
$MMS_STATE_DIR if set, else /var/lib/mms for root, else $XDG_STATE_HOME/mms
or ~/.local/state/mms. Machines are
installed in <state>/machines, machine data is kept in <state>/data, and the
embedded server's store in <state>/nats. One agent per state directory: the
agent holds a lock on <state>/lock (and on .mms-lock in the machines and
data directories) while it runs, so a second agent, or 'mms machine run
--data-dir', on the same directory exits at once with
"another mms agent (pid N) is using DIR". The kernel drops the lock when
the agent dies, however it dies.

Strict modes: like sshd, the agent refuses to start when the state,
machines, data or credentials directory, or any directory above one, could
be changed by someone other than root or the agent's user (owned by another
user, or writable by group or others, except a parent with the sticky bit
such as /tmp): they could plant a machine that runs as the agent. The error
names the path and the fix. Keep the state directory out of shared places.`,
		Example: `  mms keys --out ops
  mms agent --public-key "$(cat ops.pub)"
  mms agent --trusted-keys /etc/mms/trusted.keys --server nats://nats1:4222 --creds node.creds
  mms agent --insecure-unsigned --listen 127.0.0.1:0 --state-dir ~/mms-try   # a throwaway try-out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Keys compiled in with -ldflags (manager.PublicKey) are trusted
			// when no key is given; keys given by flag replace them.
			cfg, err := o.resolve(a)
			if err != nil {
				return err
			}
			// Run after the command tree is gone (see app.execute).
			ctx := cmd.Context()
			a.serve = func() error { return a.runAgent(ctx, cfg) }
			return nil
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	o.nats.register(f)
	f.Lookup("server").Usage = "NATS server URLs, comma-separated; omit to run an embedded server"
	f.Lookup("timeout").Usage = "bound on each NATS request at start (bucket setup) and each status write"
	f.StringVar(&o.stateDir, "state-dir", "", "agent state `DIR` (default $MMS_STATE_DIR, else /var/lib/mms for root, else $XDG_STATE_HOME/mms or ~/.local/state/mms)")
	f.StringVar(&o.machinesDir, "machines-dir", "", "install and run machines from `DIR` (default <state-dir>/machines)")
	f.StringVar(&o.dataDir, "data-dir", "", "keep machine data in `DIR` (default <state-dir>/data)")
	f.StringVar(&o.identity, "identity", host, "node identity, in events, matchers and the status key")
	f.StringVar(&o.factsFile, "facts", "", "JSON or YAML facts `FILE` (merged over the built-in facts; re-read when it changes)")
	f.StringArrayVar(&o.publicKeys, "public-key", nil, "trusted ed25519 public key, `HEX` (repeatable)")
	f.StringVar(&o.trustedKeysFile, "trusted-keys", "", "`FILE` of trusted hex public keys, one per line, '#' comments")
	f.IntVar(&o.threshold, "threshold", 1, "distinct trusted keys that must sign a spec")
	f.StringVar(&o.bucket, "bucket", "MACHINES", "KV bucket holding the signed spec")
	f.StringVar(&o.key, "key", "machines", "key of the signed spec in --bucket")
	f.BoolVar(&o.allowLegacy, "allow-legacy-spec", false, "accept v1 (Choria) spec envelopes, which have no serial or expiry")
	f.StringVar(&o.resetHistory, "reset-spec-history", "", "forget the last accepted spec if its serial is `SERIAL` (0 for v1), so the next signed spec is accepted whatever its serial or format (a way back to v1, or out of a bad high serial); logged loudly, a no-op once done")
	f.DurationVar(&o.verifyInterval, "verify-interval", machineswatcher.DefaultVerifyInterval, "re-hash installed machines in full against their SHA256SUMS this often (tampered ones are reinstalled)")
	f.BoolVar(&o.allowHTTP, "allow-http", false, "allow http:// archive sources (integrity still comes from the checksums)")
	f.BoolVar(&o.insecure, "insecure-unsigned", false, "run specs without checking any signature (unsafe: anyone who can write the bucket controls this node; refused on a NATS server without authentication)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:4222", "embedded NATS server address `HOST:PORT` (port 0: any free port)")
	f.DurationVar(&o.statusInterval, "status-interval", nodestatus.DefaultHeartbeat, "rewrite the status document at least this often")
	f.BoolVar(&o.fsNotify, "fs-notify", true, "watch the machines directory with inotify for machines put there by hand; with =false they are found by the rescan every 10s (for a node short of inotify instances: Linux allows 128 per user by default)")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics (/metrics) and a health check (/healthz) on `HOST:PORT`, e.g. 127.0.0.1:9180 (off by default)")
	f.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
