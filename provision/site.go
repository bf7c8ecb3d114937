package provision

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/mms-io/mms/agent"
)

// DefaultHubDomain is the JetStream domain of the hub when none is named.
const DefaultHubDomain = "hub"

// Topology is where a server sits: its name, its cluster, its JetStream
// domain, and its leafnode links. An edge site is a server of its own in
// its own JetStream domain (the site's name) linked to the hub cluster as
// a leafnode; see docs/sites.md.
//
//	hub cluster (domain hub)                  site paris (domain paris)
//	KV_MACHINES ─────── mirror ──────────────▶ KV_MACHINES ──▶ agents watch
//	OBJ_ARCHIVES ────── mirror ──────────────▶ OBJ_ARCHIVES ──▶ agents download
//	KV_MACHINES_STATUS ◀── source ──────────── KV_MACHINES_STATUS ◀── agents write
//	CHORIA_MACHINE ◀────── source ──────────── CHORIA_MACHINE ◀──── agents publish
type Topology struct {
	// ServerName is server_name, required in a cluster and with a
	// JetStream domain.
	ServerName string
	// Domain is the server's JetStream domain: the hub's (with Sites), or
	// the site's own name (with Hub).
	Domain string
	// Cluster, ClusterListen and Routes make the server one of a cluster:
	// its name, the HOST:PORT it listens on for routes, and the route URLs
	// of every server of the cluster (nats-route://host:port).
	Cluster       string
	ClusterListen string
	Routes        []string
	// LeafListen is the HOST:PORT a hub listens on for sites' leafnode
	// links; LeafAdvertise, when set, is the address it tells sites to use
	// instead (behind NAT, or a proxy).
	LeafListen, LeafAdvertise string
	// Sites are the sites a hub accepts, one leafnode user each.
	Sites []Site
	// Hub, when set, makes this a site's server: it links to the hub.
	Hub *HubLink
}

// Site is the leafnode user of one site on the hub.
type Site struct {
	// Name is the site's name, also its JetStream domain.
	Name string
	// NKey is the public nkey its server authenticates with.
	NKey string
}

// HubLink is a site server's leafnode link to the hub.
type HubLink struct {
	// URLs are the hub's leafnode URLs (nats-leaf://host:7422, tls://…).
	URLs []string
	// Domain is the hub's JetStream domain (DefaultHubDomain if empty).
	Domain string
	// Seed is the nkey seed of the site's user on the hub (the site-NAME
	// seed `mms nats-config --leaf-site NAME` wrote with the hub's
	// configuration). It is written into the configuration, which is
	// therefore secret.
	Seed string
}

// hubDomain is the hub's JetStream domain.
func (h *HubLink) hubDomain() string {
	if h.Domain != "" {
		return h.Domain
	}
	return DefaultHubDomain
}

// validate reports every problem of t at once.
func (t Topology) validate() error {
	var errs []error
	check := func(what, hostport string) {
		if hostport == "" {
			return
		}
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", what, hostport, err))
		}
	}
	check("cluster listen", t.ClusterListen)
	check("leafnode listen", t.LeafListen)
	check("leafnode advertise", t.LeafAdvertise)
	if t.Domain != "" {
		if err := checkDomain(t.Domain); err != nil {
			errs = append(errs, fmt.Errorf("domain %q: %w", t.Domain, err))
		}
	}
	if (t.Domain != "" || t.Cluster != "") && t.ServerName == "" {
		errs = append(errs, errors.New("a server in a cluster or a JetStream domain needs a server name"))
	}
	if t.Cluster != "" && (t.ClusterListen == "" || len(t.Routes) == 0) {
		errs = append(errs, fmt.Errorf("cluster %q: needs a cluster listen address and the routes of its servers", t.Cluster))
	}
	for _, r := range t.Routes {
		if u, err := url.Parse(r); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("route %q: want nats-route://HOST:PORT", r))
		}
	}
	if len(t.Sites) > 0 && (t.LeafListen == "" || t.Domain == "") {
		errs = append(errs, errors.New("a hub of sites needs a leafnode listen address and a JetStream domain"))
	}
	seen := map[string]bool{}
	for _, s := range t.Sites {
		if err := checkDomain(s.Name); err != nil {
			errs = append(errs, fmt.Errorf("site %q: %w", s.Name, err))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("site %q: given twice", s.Name))
		}
		seen[s.Name] = true
		if s.Name == t.Domain {
			errs = append(errs, fmt.Errorf("site %q: that is the hub's own domain", s.Name))
		}
		if s.NKey == "" {
			errs = append(errs, fmt.Errorf("site %q: nkey is required", s.Name))
		}
	}
	if h := t.Hub; h != nil {
		if len(t.Sites) > 0 {
			errs = append(errs, errors.New("a site's server accepts no sites of its own"))
		}
		if t.Domain == "" || t.Domain == h.hubDomain() {
			errs = append(errs, fmt.Errorf("site domain %q: want the site's name, not empty nor the hub's domain", t.Domain))
		}
		if len(h.URLs) == 0 {
			errs = append(errs, errors.New("hub: give the hub's leafnode URLs"))
		}
		for _, u := range h.URLs {
			if p, err := url.Parse(u); err != nil || p.Host == "" {
				errs = append(errs, fmt.Errorf("hub URL %q: want nats-leaf://HOST:PORT", u))
			}
		}
		if pre, _, err := nkeys.DecodeSeed([]byte(h.Seed)); err != nil || pre != nkeys.PrefixByteUser {
			errs = append(errs, errors.New("hub: the site's seed is not a user nkey seed"))
		}
	}
	return errors.Join(errs...)
}

// siteLocalSubjects are the subjects a site keeps to itself on the link:
// status and events are stored at the site and sourced by the hub, so
// sending them over the link too would store them twice; and the hub's own
// events and status must not land in the site's streams (and come back).
func siteLocalSubjects(c Config) []string {
	return []string{agent.EventsSubjects, "$KV." + c.StatusBucket + ".>"}
}

// SitePermissions are what a site's server may do on the hub through its
// leafnode link, from the site's side: create (and drop) the consumers
// that mirror the spec bucket and the archive stores, answer the hub's
// requests in the site's domain and deliver what the hub sources (status
// and events), and pass nudges and their answers. It may not write the
// spec or archives, nor create, change or delete any stream on the hub.
func SitePermissions(c Config, s Site) Permissions {
	hubAPI := func(parts ...string) string { return "$JS." + c.Topology.Domain + ".API." + strings.Join(parts, ".") }
	mirrored := []string{"KV_" + c.Bucket}
	for _, b := range c.ArchiveBuckets {
		mirrored = append(mirrored, "OBJ_"+b)
	}
	pub := []string{
		"$JS.S.>",   // the deliveries of what the hub sources from the site
		"$JSC.R.>",  // answers to the hub's requests in the site's domain
		"$JS.FC.>",  // flow control of mirrors and sources
		"_INBOX.>",  // answers: to the hub's requests, and agents' to nudges
		"$JS.ACK.>", // acknowledgements of deliveries
	}
	for _, st := range mirrored {
		pub = append(pub,
			hubAPI("CONSUMER", "CREATE", st), hubAPI("CONSUMER", "CREATE", st, ">"),
			hubAPI("CONSUMER", "DELETE", st, "*"), hubAPI("CONSUMER", "INFO", st, "*"),
			hubAPI("STREAM", "INFO", st))
	}
	sub := []string{
		"$JS." + s.Name + ".API.>", // the hub's requests in the site's domain
		"$JS.M.>",                  // mirror deliveries
		"$JSC.R.>",                 // answers to the site's requests
		"$JS.FC.>",
		"_INBOX.>",
		"$JS.ACK.>",
		"mms.reconcile",
	}
	return Permissions{Publish: pub, Subscribe: sub}
}

// renderTopology writes the server_name, cluster and leafnode blocks.
func renderTopology(b *strings.Builder, c Config) {
	t := c.Topology
	if t.ServerName != "" {
		fmt.Fprintf(b, "server_name: %s\n", quote(t.ServerName))
	}
	if t.Cluster != "" {
		fmt.Fprintf(b, "cluster {\n  name: %s\n  listen: %s\n  routes: %s\n}\n", quote(t.Cluster), quote(t.ClusterListen), list(t.Routes, "  "))
	}
	switch {
	case t.LeafListen != "":
		b.WriteString("# Edge sites link here as leafnodes, each as its site-NAME user below.\n")
		fmt.Fprintf(b, "leafnodes {\n  listen: %s\n", quote(t.LeafListen))
		if t.LeafAdvertise != "" {
			fmt.Fprintf(b, "  advertise: %s\n", quote(t.LeafAdvertise))
		}
		b.WriteString("}\n")
	case t.Hub != nil:
		local := list(siteLocalSubjects(c), "      ")
		b.WriteString("# The link to the hub (domain " + t.Hub.hubDomain() + "): the spec and archives are mirrored here,\n")
		b.WriteString("# this site's status and events are sourced by the hub. The seed below is\n")
		b.WriteString("# the site's user on the hub: keep this file secret.\n")
		fmt.Fprintf(b, "leafnodes {\n  reconnect: \"2s\"\n  remotes: [\n    {\n      urls: %s\n      account: \"MMS\"\n      nkey: %s\n", list(t.Hub.URLs, "      "), quote(t.Hub.Seed))
		fmt.Fprintf(b, "      deny_exports: %s\n      deny_imports: %s\n    }\n  ]\n}\n", local, local)
	}
}

// jetstreamBlock is the jetstream block: the store and the domain.
func jetstreamBlock(c Config) string {
	if c.Topology.Domain == "" {
		return fmt.Sprintf("jetstream {\n  store_dir: %s\n}\n", quote(c.StoreDir))
	}
	return fmt.Sprintf("jetstream {\n  store_dir: %s\n  domain: %s\n}\n", quote(c.StoreDir), quote(c.Topology.Domain))
}

// siteUsers writes the leafnode user of every site a hub accepts.
func siteUsers(b *strings.Builder, c Config) {
	sites := slices.Clone(c.Topology.Sites)
	slices.SortFunc(sites, func(a, b Site) int { return strings.Compare(a.Name, b.Name) })
	for _, s := range sites {
		user(b, fmt.Sprintf("site %s: its server's leafnode link (domain %s)", s.Name, s.Name), s.NKey, SitePermissions(c, s))
	}
}
