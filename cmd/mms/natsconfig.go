package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/provision"
)

// natsConfigFile is the server configuration's name in --out.
const natsConfigFile = "nats-server.conf"

func (a *app) newNatsConfigCmd() *cobra.Command {
	var (
		out, listen, store, bucket, key string
		nodes, governors, archives      []string
	)
	cmd := &cobra.Command{
		Use:   "nats-config",
		Short: "Write a least-privilege nats-server configuration for a fleet",
		Long: `Write a least-privilege nats-server configuration for an mms fleet into
--out: nats-server.conf and one nkey seed file (0600) per user. An existing
seed file is kept, so run it again with more --node flags to add nodes.

Users (one JetStream account, MMS):
  admin     everything: creates the buckets, streams and governors
  operator  writes the spec key, uploads archives, reads status and events,
            nudges agents ('mms reconcile'); creates and deletes nothing
  node-KEY  one per --node: reads the spec and the archives, writes only its
            own status key, publishes machine events, takes and frees the
            slots of the --governor governors, hears reconcile nudges

docs/nats-permissions.md explains each permission and what NATS
permissions cannot prevent (machine events carry no proven identity).
Connect with --nkey DIR/<user>.nk.`,
		Example: `  mms nats-config --out /etc/nats/mms --node web1 --node web2 --governor downloads --archive-bucket ARCHIVES
  nats-server -c /etc/nats/mms/nats-server.conf
  mms agent --server nats://nats1:4222 --nkey /etc/mms/node-web1.nk --identity web1 --trusted-keys /etc/mms/trusted.keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			if len(nodes) == 0 {
				return errors.New("give at least one --node IDENTITY")
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			c := provision.Config{
				Listen: listen, StoreDir: store, Bucket: bucket, Key: key,
				StatusBucket: nodestatus.Bucket, EventsStream: agent.EventsStream,
				Governors: governors, ArchiveBuckets: archives,
			}
			var err error
			var written []string
			seed := func(name string) string {
				if err != nil {
					return ""
				}
				var pub string
				pub, err = userSeed(filepath.Join(out, name+".nk"))
				written = append(written, filepath.Join(out, name+".nk"))
				return pub
			}
			c.Admin, c.Operator = seed("admin"), seed("operator")
			for _, id := range nodes {
				c.Nodes = append(c.Nodes, provision.Node{Identity: id, NKey: seed(nodeUser(id))})
			}
			if err != nil {
				return err
			}
			text, err := provision.Render(c)
			if err != nil {
				return err
			}
			conf := filepath.Join(out, natsConfigFile)
			if err := atomicfile.WriteFile(conf, []byte(text), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote %s\nnkey seeds (secret, 0600; give each to its user only): %s\n", conf, strings.Join(written, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "write the configuration and the nkey seeds into `DIR`")
	f.StringArrayVar(&nodes, "node", nil, "an agent's `IDENTITY` (repeatable): one user each")
	f.StringArrayVar(&governors, "governor", nil, "a governor spec entries name (repeatable): nodes may take its slots")
	f.StringArrayVar(&archives, "archive-bucket", nil, "an object store nats:// sources name (repeatable): nodes read it, the operator writes it")
	f.StringVar(&listen, "listen", "0.0.0.0:4222", "the server's `HOST:PORT` (port 0: a free port)")
	f.StringVar(&store, "store", "/var/lib/nats", "the JetStream store `DIR`")
	f.StringVar(&bucket, "bucket", "MACHINES", "KV bucket holding the signed spec")
	f.StringVar(&key, "key", "machines", "key of the signed spec in --bucket")
	return cmd
}

// nodeUser is the seed file name (without .nk) of the node with identity:
// its status key, with '/' escaped like the key escapes other bytes, so
// the name is one file name and stays one per identity.
func nodeUser(identity string) string {
	return "node-" + strings.ReplaceAll(nodestatus.Key(identity), "/", "=2F")
}

// userSeed returns the public key of the user nkey seed in path, creating
// the seed (0600) when the file does not exist.
func userSeed(path string) (string, error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", fmt.Errorf("create nkey for %s: %w", path, err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return "", err
		}
		if err := atomicfile.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return "", err
		}
		return kp.PublicKey()
	case err != nil:
		return "", fmt.Errorf("read nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(data))))
	if err != nil {
		return "", fmt.Errorf("nkey seed %s: %w", path, err)
	}
	return kp.PublicKey()
}
