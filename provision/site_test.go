package provision

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// siteSeed returns a fresh user seed and its public key.
func siteSeed(t *testing.T) (seed, pub string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return string(s), p
}

func TestRenderHubAndSite(t *testing.T) {
	seed, pub := siteSeed(t)
	hub := testConfig()
	hub.Topology = Topology{ServerName: "nats1", Domain: "hub", Cluster: "hub", ClusterListen: "0.0.0.0:6222",
		Routes: []string{"nats-route://nats1:6222", "nats-route://nats2:6222"}, LeafListen: "0.0.0.0:7422",
		Sites: []Site{{Name: "paris", NKey: pub}}}
	text, err := Render(hub)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"jetstream {\n  store_dir: \"/var/lib/nats\"\n  domain: \"hub\"\n}\n",
		"server_name: \"nats1\"\n",
		"cluster {\n  name: \"hub\"\n  listen: \"0.0.0.0:6222\"\n  routes: [\"nats-route://nats1:6222\", \"nats-route://nats2:6222\"]\n}\n",
		"leafnodes {\n  listen: \"0.0.0.0:7422\"\n}\n",
		"# site paris: its server's leafnode link (domain paris)\n      {\n        nkey: \"" + pub + "\"",
		`"$JS.hub.API.CONSUMER.CREATE.KV_MACHINES.>"`,
		`"$JS.hub.API.CONSUMER.CREATE.OBJ_ARCHIVES.>"`,
		`"$JS.paris.API.>"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("hub configuration lacks %q:\n%s", want, text)
		}
	}
	// The site may not write the hub's spec, archives or status, nor
	// manage its streams.
	p := SitePermissions(hub, hub.Topology.Sites[0])
	for _, s := range p.Publish {
		if strings.HasPrefix(s, "$KV.") || strings.HasPrefix(s, "$O.") || s == ">" || strings.Contains(s, "STREAM.CREATE") ||
			strings.Contains(s, "STREAM.DELETE") || strings.Contains(s, "STREAM.UPDATE") || strings.Contains(s, "PURGE") || strings.HasPrefix(s, "choria.") {
			t.Errorf("a site may publish %s on the hub", s)
		}
	}

	site := testConfig()
	site.Topology = Topology{ServerName: "paris", Domain: "paris", Hub: &HubLink{URLs: []string{"nats-leaf://nats1:7422"}, Seed: seed}}
	text, err = Render(site)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"jetstream {\n  store_dir: \"/var/lib/nats\"\n  domain: \"paris\"\n}\n",
		"      urls: [\"nats-leaf://nats1:7422\"]\n      account: \"MMS\"\n      nkey: \"" + seed + "\"\n",
		"      deny_exports: [\"choria.machine.>\", \"$KV.MACHINES_STATUS.>\"]\n      deny_imports: [\"choria.machine.>\", \"$KV.MACHINES_STATUS.>\"]\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("site configuration lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "site paris:") || strings.Contains(text, "\n  listen: ") {
		t.Errorf("a site's server accepts leafnodes:\n%s", text)
	}
}

func TestTopologyRefusesBadInput(t *testing.T) {
	seed, pub := siteSeed(t)
	tests := []struct {
		name string
		topo Topology
		want string
	}{
		{"domain without a name", Topology{Domain: "hub"}, "needs a server name"},
		{"cluster without routes", Topology{ServerName: "a", Cluster: "c", ClusterListen: "0.0.0.0:6222"}, `cluster "c": needs a cluster listen address and the routes`},
		{"sites without a leafnode listener", Topology{ServerName: "a", Domain: "hub", Sites: []Site{{Name: "paris", NKey: pub}}}, "needs a leafnode listen address"},
		{"a site named as the hub", Topology{ServerName: "a", Domain: "hub", LeafListen: "0.0.0.0:7422", Sites: []Site{{Name: "hub", NKey: pub}}}, `site "hub": that is the hub's own domain`},
		{"a bad site name", Topology{ServerName: "a", Domain: "hub", LeafListen: "0.0.0.0:7422", Sites: []Site{{Name: "pa.ris", NKey: pub}}}, `site "pa.ris": character '.'`},
		{"a site in the hub's domain", Topology{ServerName: "a", Domain: "hub", Hub: &HubLink{URLs: []string{"nats-leaf://h:7422"}, Seed: seed}}, `site domain "hub"`},
		{"a site without hub URLs", Topology{ServerName: "a", Domain: "paris", Hub: &HubLink{Seed: seed}}, "give the hub's leafnode URLs"},
		{"a site with a bad seed", Topology{ServerName: "a", Domain: "paris", Hub: &HubLink{URLs: []string{"nats-leaf://h:7422"}, Seed: pub}}, "not a user nkey seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			c.Topology = tt.topo
			if _, err := Render(c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render() = %v, want %q", err, tt.want)
			}
		})
	}
}
