package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/jscluster"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// siteTimeout bounds the waits of the site test: a mirror catching up
// after the link returns, agents converging.
const siteTimeout = 2 * time.Minute

// startFromConfig starts a nats-server in this process from exactly the
// file `mms nats-config` wrote.
func startFromConfig(t *testing.T, conf string) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses %s: %v", conf, err)
	}
	opts.NoLog, opts.NoSigs = true, true
	return natstest.Run(t, opts)
}

// copySeeds copies the nkey seeds of dir into to, so that every server of
// a cluster knows the same users.
func copySeeds(t *testing.T, dir, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	seeds, err := filepath.Glob(filepath.Join(dir, "*.nk"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(s)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// bigMachineDir is machineSourceDir with an incompressible file of size
// bytes, so an archive crossing a link shows in the link's byte count.
func bigMachineDir(t *testing.T, name, version string, size int) string {
	t.Helper()
	dir := machineSourceDir(t, name, version)
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, "payload.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// leafOutBytes is what the hub server sent over its leafnode links.
func leafOutBytes(t *testing.T, s *server.Server) int64 {
	t.Helper()
	lz, err := s.Leafz(nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range lz.Leafs {
		n += l.OutBytes
	}
	return n
}

// TestEdgeSite is issue 25's edge site: a hub of three servers and one
// site server, each started from exactly the configuration `mms
// nats-config` writes (the hub with --domain, --leafnodes and --leaf-site,
// the site with --site and --hub), the link between them through a proxy
// the test cuts. `mms init --replicas 3 --site paris` at the hub makes the
// hub's resources and, through the link, the site's mirrors. Agents at the
// site run from the site's server only. Then: the link is cut; an agent
// that starts at the site applies the spec already mirrored; a new spec
// is put at the hub; the link is restored; every site agent converges on
// it; the hub's `mms status` shows the site's agents on it and its `mms
// events --since` the events the site buffered while cut; and each
// archive crossed the link once, not once per agent (counted from the
// bytes the hub sent over the link).
func TestEdgeSite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four servers and four agents")
	}
	mmsBinary(t) // built before the test changes directory
	started := time.Now()
	elapsed := func() time.Duration { return time.Since(started).Round(time.Millisecond) }
	f := newOperatorFixture(t)
	pub := strings.TrimSpace(readFile(t, f.pub))

	// The hub: three servers, n1 accepting the site's link (through the
	// proxy, which it advertises).
	ports, err := jscluster.FreePorts(7)
	if err != nil {
		t.Fatal(err)
	}
	clientPorts, routePorts, leafPort := ports[:3], ports[3:6], ports[6]
	proxy := natstest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", leafPort))
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, "--route", fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var hub []*server.Server
	var hubURLs []string
	hubDir := func(i int) string { return filepath.Join(f.dir, fmt.Sprintf("hub-%d", i+1)) }
	for i := range 3 {
		if i > 0 {
			copySeeds(t, hubDir(0), hubDir(i))
		}
		args := append([]string{"nats-config", "--out", hubDir(i), "--node", "hub-web1", "--archive-bucket", "ARCHIVES",
			"--listen", fmt.Sprintf("127.0.0.1:%d", clientPorts[i]), "--store", filepath.Join(hubDir(i), "jetstream"),
			"--server-name", fmt.Sprintf("hub%d", i+1), "--domain", "hub", "--cluster", "hub",
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", routePorts[i])}, routes...)
		if i == 0 {
			args = append(args, "--leafnodes", fmt.Sprintf("127.0.0.1:%d", leafPort), "--leafnodes-advertise", proxy.Addr(), "--leaf-site", "paris")
		}
		mmsOK(t, "", args...)
		hub = append(hub, startFromConfig(t, filepath.Join(hubDir(i), natsConfigFile)))
		hubURLs = append(hubURLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	natstest.Eventually(t, siteTimeout, func() error { return jscluster.Ready(hub) })
	urls := strings.Join(hubURLs, ",")
	as := func(user string) []string {
		return []string{"--server", urls, "--nkey", filepath.Join(hubDir(0), user+".nk")}
	}

	// The site's server.
	siteDir := filepath.Join(f.dir, "paris")
	siteNodes := []string{"s1", "s2", "s3", "s4"}
	args := []string{"nats-config", "--out", siteDir, "--site", "paris", "--hub", "nats-leaf://" + proxy.Addr(),
		"--site-seed", filepath.Join(hubDir(0), "site-paris.nk"), "--archive-bucket", "ARCHIVES",
		"--listen", "127.0.0.1:0", "--store", filepath.Join(siteDir, "jetstream")}
	for _, n := range siteNodes {
		args = append(args, "--node", n)
	}
	mmsOK(t, "", args...)
	site := startFromConfig(t, filepath.Join(siteDir, natsConfigFile))
	linked := func(n int) func() error {
		return func() error {
			if got := hub[0].NumLeafNodes(); got != n {
				return fmt.Errorf("the hub has %d leafnode links, want %d", got, n)
			}
			if got := site.NumLeafNodes(); got != n {
				return fmt.Errorf("the site has %d leafnode links, want %d", got, n)
			}
			return nil
		}
	}
	natstest.Eventually(t, siteTimeout, linked(1))

	// The admin makes every resource at the hub and, through the link, at
	// the site.
	natstest.Eventually(t, siteTimeout, func() error {
		r := mmsExec(t, nil, append([]string{"init", "--replicas", "3", "--site", "paris"}, as("admin")...)...)
		if r.code != 0 {
			return fmt.Errorf("mms init --site paris = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	t.Logf("%v: mms init made the hub's resources and the site's mirrors", elapsed())

	// Agents at the site, each a client of the site's server only.
	agents := map[string]*inProcessAgent{}
	t.Cleanup(func() {
		var all []*inProcessAgent
		for _, a := range agents {
			all = append(all, a)
		}
		stopInProcessAgents(t, all)
	})
	startSiteAgent := func(id string) {
		agents[id] = startInProcessAgent([]string{"agent", "--server", site.ClientURL(), "--nkey", filepath.Join(siteDir, "node-"+id+".nk"),
			"--public-key", pub, "--state-dir", filepath.Join(f.dir, "state-"+id), "--identity", id, "--status-interval", "2s", "--log-level", "warn"})
	}
	for _, id := range siteNodes[:3] {
		startSiteAgent(id)
	}

	// The operator, at the hub.
	const payload = 256 << 10
	upload := func(version string) (spec.Machine, int64) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "web.tar.gz")
		r := mmsOK(t, "", append([]string{"archive", "create", bigMachineDir(t, "web", version, payload), "--out", out, "--upload", "nats://ARCHIVES"}, as("operator")...)...)
		var m spec.Machine
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatalf("mms archive create printed %q: %v", r.stdout, err)
		}
		return m, m.Size
	}
	serial := uint64(time.Now().Unix())
	put := func(m spec.Machine) uint64 {
		t.Helper()
		writeMachines(t, f.dir, m)
		serial++
		env := mmsOK(t, "", "pack", "machines.json", "--key-file", f.keyFile, "--serial", fmt.Sprint(serial)).stdout
		mmsOK(t, env, append([]string{"put"}, as("operator")...)...)
		return serial
	}
	// hubSees waits until the hub's `mms status` shows every agent of ids
	// on serial with web running.
	hubSees := func(serial uint64, ids ...string) {
		t.Helper()
		natstest.Eventually(t, siteTimeout, func() error {
			r := mmsExec(t, nil, append([]string{"status", "--json"}, as("operator")...)...)
			if r.code != 0 {
				return fmt.Errorf("mms status at the hub: exit %d: %s", r.code, r.stderr)
			}
			var docs []nodestatus.Document
			if err := json.Unmarshal([]byte(r.stdout), &docs); err != nil {
				return err
			}
			byID := map[string]*nodestatus.Document{}
			for i := range docs {
				byID[docs[i].Identity] = &docs[i]
			}
			for _, id := range ids {
				d := byID[id]
				if d == nil {
					return fmt.Errorf("the hub has no status of %s", id)
				}
				if m := findMachine(d, "web"); d.AppliedSerial() != serial || m == nil || m.State != "ready" {
					return fmt.Errorf("the hub's status of %s: serial %d, machines %+v; want serial %d running", id, d.AppliedSerial(), d.Machines, serial)
				}
			}
			return nil
		})
	}

	sent := leafOutBytes(t, hub[0]) // the mirror copies an archive as it is uploaded
	v1, size1 := upload("1.0.0")
	serial1 := put(v1)
	hubSees(serial1, siteNodes[:3]...)
	crossed1 := float64(leafOutBytes(t, hub[0])-sent) / float64(size1)
	t.Logf("%v: 1.0.0 runs on the 3 site agents, and the hub sees it; the hub sent %.2f× the archive's %d bytes over the link", elapsed(), crossed1, size1)

	// The link is cut.
	proxy.Cut()
	natstest.Eventually(t, siteTimeout, linked(0))
	t.Logf("%v: the link is cut", elapsed())
	siteNC, siteJS := connectJS(t, site.ClientURL(), nkeyOption(t, filepath.Join(siteDir, "admin.nk")))
	siteStatus, err := siteJS.KeyValue(t.Context(), nodestatus.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	siteRuns := func(serial uint64, ids ...string) func() error {
		return func() error {
			for _, id := range ids {
				e, err := siteStatus.Get(t.Context(), nodestatus.Key(id))
				if err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				d, err := nodestatus.ParseDocument(e.Value())
				if err != nil {
					return err
				}
				if d.AppliedSerial() != serial || findMachine(d, "web") == nil || findMachine(d, "web").State != "ready" {
					return fmt.Errorf("%s at the site: serial %d, machines %+v; want serial %d, web ready", id, d.AppliedSerial(), d.Machines, serial)
				}
			}
			return nil
		}
	}
	// A new agent at the site applies the spec the site mirrored.
	startSiteAgent(siteNodes[3])
	natstest.Eventually(t, siteTimeout, siteRuns(serial1, siteNodes...))
	t.Logf("%v: while cut, the new site agent %s applied the mirrored spec", elapsed(), siteNodes[3])

	// A new version is put at the hub while the link is cut.
	v2, size2 := upload("2.0.0")
	serial2 := put(v2)
	if err := siteRuns(serial1, siteNodes...)(); err != nil {
		t.Errorf("while cut, the site left the mirrored spec: %v", err)
	}

	// The link returns: the site converges, the hub sees it all.
	proxy.Restore()
	restored := time.Now()
	natstest.Eventually(t, siteTimeout, linked(1))
	natstest.Eventually(t, siteTimeout, siteRuns(serial2, siteNodes...))
	converged := time.Since(restored)
	hubSees(serial2, siteNodes...)
	// leafOutBytes counts the new link only: everything since the restore.
	crossed2 := float64(leafOutBytes(t, hub[0])) / float64(size2)
	t.Logf("%v: the link is back; the 4 site agents run 2.0.0 %v later and the hub sees them; the hub sent %.2f× the archive's %d bytes over the link since",
		elapsed(), converged.Round(time.Millisecond), crossed2, size2)
	for what, crossed := range map[string]float64{"1.0.0 (3 agents)": crossed1, "2.0.0 (4 agents)": crossed2} {
		if crossed < 1 || crossed >= 2 {
			t.Errorf("archive %s crossed the link %.2f times (bytes sent / archive size), want once", what, crossed)
		}
	}

	// The events the site buffered while cut reach the hub's stream.
	natstest.Eventually(t, siteTimeout, func() error {
		return eventsReplay(t, as("operator"), " "+siteNodes[3]+" web transition checked idle -> ready")
	})
	t.Logf("%v: the hub's mms events --since shows the events %s published while the link was cut", elapsed(), siteNodes[3])

	// A nudge at the hub reaches the site's agents, and they answer.
	natstest.Eventually(t, siteTimeout, func() error {
		r := mms(t, "", append([]string{"reconcile"}, as("operator")...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "nudged 4 nodes: ") {
			return fmt.Errorf("mms reconcile at the hub = exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})

	_, hubJS := connectJS(t, urls, nkeyOption(t, filepath.Join(hubDir(0), "admin.nk")))
	// Each event is stored once at the hub (the hub has no agents of its
	// own: its events are the site's), not also sent over the link.
	natstest.Eventually(t, siteTimeout, func() error {
		counts := map[string]uint64{}
		for name, js := range map[string]jetstream.JetStream{"hub": hubJS, "site": siteJS} {
			s, err := js.Stream(t.Context(), "CHORIA_MACHINE")
			if err != nil {
				return err
			}
			counts[name] = s.CachedInfo().State.Msgs
		}
		if counts["hub"] != counts["site"] {
			return fmt.Errorf("events stored: %v, want as many at the hub as at the site", counts)
		}
		return nil
	})

	// The site's server cannot write the hub's spec, nor delete its
	// streams, even as the site's admin.
	specs, err := hubJS.KeyValue(t.Context(), "MACHINES")
	if err != nil {
		t.Fatal(err)
	}
	before, err := specs.Get(t.Context(), "machines")
	if err != nil {
		t.Fatal(err)
	}
	if err := siteNC.Publish("$KV.MACHINES.machines", []byte("from the site")); err != nil {
		t.Fatal(err)
	}
	if _, err := siteNC.Request("$JS.hub.API.STREAM.DELETE.KV_MACHINES", nil, 2*time.Second); err == nil {
		t.Errorf("the site's admin deleted the hub's spec stream")
	}
	if err := siteNC.Flush(); err != nil {
		t.Fatal(err)
	}
	after, err := specs.Get(t.Context(), "machines")
	if err != nil || after.Revision() != before.Revision() {
		t.Errorf("the hub's spec after the site wrote it: %v, %v; want revision %d unchanged", after, err, before.Revision())
	}
}

// nkeyOption authenticates with the seed in file.
func nkeyOption(t *testing.T, file string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(file)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}
