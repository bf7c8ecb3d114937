package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
		topo                            topologyFlags
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
Connect with --nkey DIR/<user>.nk.

A cluster: give each server its own configuration with --server-name,
--cluster NAME, --cluster-listen HOST:PORT and one --route per server of the
cluster (the same seeds: run it for every server into the same --out, or
copy the seeds).

Edge sites (docs/sites.md): the hub's servers get a JetStream --domain,
--leafnodes HOST:PORT for the sites' links and --leaf-site NAME for each site
(its server's user on the hub, seed site-NAME.nk). A site's server is
written with --site NAME --hub URL…: its own JetStream domain NAME, a
leafnode link to the hub that authenticates with --site-seed (the hub's
site-NAME.nk, copied to the site), and the users of the site's --node
agents. 'mms init --site NAME' at the hub then makes the site's mirrors and
buckets.`,
		Example: `  mms nats-config --out /etc/nats/mms --node web1 --node web2 --governor downloads --archive-bucket ARCHIVES
  nats-server -c /etc/nats/mms/nats-server.conf
  mms agent --server nats://nats1:4222 --nkey /etc/mms/node-web1.nk --identity web1 --trusted-keys /etc/mms/trusted.keys
  # a hub server that accepts the edge site paris, and paris's server
  mms nats-config --out hub --node web1 --server-name nats1 --domain hub --leafnodes 0.0.0.0:7422 --leaf-site paris
  mms nats-config --out paris --site paris --hub nats-leaf://nats1:7422 --site-seed hub/site-paris.nk --node p1 --node p2`,
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
			topology, terr := topo.topology(out, seed)
			if terr != nil {
				return terr
			}
			if err != nil { // a site's seed
				return err
			}
			c.Topology = topology
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
	topo.register(f)
	return cmd
}

// topologyFlags are the flags of `mms nats-config` that place the server:
// a cluster, a hub of edge sites, or a site's server.
type topologyFlags struct {
	serverName, domain, cluster, clusterListen string
	routes                                     []string
	leafListen, leafAdvertise                  string
	leafSites                                  []string
	site, hubDomain, siteSeed                  string
	hubs                                       []string
}

func (t *topologyFlags) register(f *pflag.FlagSet) {
	f.StringVar(&t.serverName, "server-name", "", "the server's `NAME` (needed in a cluster and with --domain; default the --site name)")
	f.StringVar(&t.domain, "domain", "", "the hub's JetStream `DOMAIN`, which sites mirror (with --leaf-site)")
	f.StringVar(&t.cluster, "cluster", "", "the cluster's `NAME`: this server is one of a cluster")
	f.StringVar(&t.clusterListen, "cluster-listen", "", "`HOST:PORT` for the cluster's routes")
	f.StringArrayVar(&t.routes, "route", nil, "the route `URL` of a server of the cluster, nats-route://HOST:PORT (repeatable: every server)")
	f.StringVar(&t.leafListen, "leafnodes", "", "a hub: `HOST:PORT` edge sites link to")
	f.StringVar(&t.leafAdvertise, "leafnodes-advertise", "", "a hub: the `HOST:PORT` sites are told to use (behind NAT or a proxy)")
	f.StringArrayVar(&t.leafSites, "leaf-site", nil, "a hub: the edge site `NAME` (repeatable): its server's user, seed site-NAME.nk")
	f.StringVar(&t.site, "site", "", "write the configuration of the edge site `NAME`'s server (its JetStream domain), linked to --hub")
	f.StringArrayVar(&t.hubs, "hub", nil, "with --site: the hub's leafnode `URL`s, nats-leaf://HOST:PORT (repeatable or comma-separated)")
	f.StringVar(&t.hubDomain, "hub-domain", provision.DefaultHubDomain, "with --site: the hub's JetStream domain")
	f.StringVar(&t.siteSeed, "site-seed", "", "with --site: the site's seed the hub's --leaf-site wrote (default DIR/site-NAME.nk)")
}

// topology turns the flags into the server's topology; seed makes (or
// reads) the seed of a user in out and returns its public key.
func (t *topologyFlags) topology(out string, seed func(name string) string) (provision.Topology, error) {
	topo := provision.Topology{
		ServerName: t.serverName, Domain: t.domain, Cluster: t.cluster, ClusterListen: t.clusterListen, Routes: t.routes,
		LeafListen: t.leafListen, LeafAdvertise: t.leafAdvertise,
	}
	if t.site == "" {
		if len(t.hubs) > 0 {
			return topo, errors.New("--hub: only with --site")
		}
		for _, name := range t.leafSites {
			topo.Sites = append(topo.Sites, provision.Site{Name: name, NKey: seed("site-" + name)})
		}
		return topo, nil
	}
	if len(t.leafSites) > 0 || t.leafListen != "" {
		return topo, errors.New("--site writes a site's server, which accepts no sites: drop --leaf-site and --leafnodes")
	}
	if t.domain != "" && t.domain != t.site {
		return topo, fmt.Errorf("--domain %q: a site's JetStream domain is its name, %q", t.domain, t.site)
	}
	topo.Domain = t.site
	topo.ServerName = cmp.Or(t.serverName, t.site)
	var urls []string
	for _, h := range t.hubs {
		for _, u := range strings.Split(h, ",") {
			if u = strings.TrimSpace(u); u != "" {
				urls = append(urls, u)
			}
		}
	}
	path := cmp.Or(t.siteSeed, filepath.Join(out, "site-"+t.site+".nk"))
	data, err := os.ReadFile(path)
	if err != nil {
		return topo, fmt.Errorf("--site-seed: %w (copy the site-%s.nk that 'mms nats-config --leaf-site %s' wrote for the hub)", err, t.site, t.site)
	}
	topo.Hub = &provision.HubLink{URLs: urls, Domain: t.hubDomain, Seed: strings.TrimSpace(string(data))}
	return topo, nil
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
