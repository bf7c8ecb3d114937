package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/jscluster"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/provision"
	"github.com/mms-io/mms/spec"
)

// keys is the operator's signing key pair.
type keys struct {
	pub  string // hex, for --public-key
	priv ed25519.PrivateKey
}

func newKeys() (keys, error) {
	pub, priv, err := packer.GenerateKey(nil)
	if err != nil {
		return keys{}, fmt.Errorf("bench: generate a signing key: %w", err)
	}
	return keys{pub: packer.FormatPublicKey(pub), priv: priv}, nil
}

// seal signs a v2 spec of serial holding ms, as `mms pack` does.
func (k keys) seal(serial uint64, ms []spec.Machine) ([]byte, error) {
	if ms == nil {
		ms = []spec.Machine{}
	}
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: serial, IssuedAt: time.Now().UTC(), Machines: ms}, k.priv)
	if err != nil {
		return nil, fmt.Errorf("bench: seal spec serial %d: %w", serial, err)
	}
	return env, nil
}

// archiveBucket is the object store machine archives are uploaded to, as
// the agent's banner suggests.
const archiveBucket = provision.DefaultArchiveBucket

// natsEnv is the NATS side of a measurement: one embedded server or a
// cluster, and what an operator creates on it for a fleet (README "A
// fleet"): the spec bucket, the status bucket and an object store of
// archives, replicated on every server of a cluster.
type natsEnv struct {
	servers []*server.Server
	configs []natsbox.ServerConfig // each server's, to start it again (restart)
	urls    string                 // client URLs, comma-separated, for --server
	nc      *nats.Conn
	js      jetstream.JetStream
	specs   jetstream.KeyValue
	objects jetstream.ObjectStore
	// obs follows the agents' events.
	obs    *observer
	cancel context.CancelFunc
}

// clusterName names the bench's cluster.
const clusterName = "mms-bench"

// startNATS starts n embedded servers on loopback with random ports (a
// JetStream cluster when n > 1), their stores under dir, connects, creates
// the buckets with n replicas and starts following the agents' events.
func startNATS(ctx context.Context, dir string, n int) (*natsEnv, error) {
	var errs []error
	for range 3 { // a route port picked free may be taken before it is bound
		e, err := tryStartNATS(ctx, dir, n)
		if err == nil {
			return e, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("bench: start %d nats server(s): %w", n, errors.Join(errs...))
}

func tryStartNATS(ctx context.Context, dir string, n int) (_ *natsEnv, err error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &natsEnv{cancel: cancel}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	var routes []int
	if n > 1 {
		if routes, err = jscluster.FreePorts(n); err != nil {
			return nil, err
		}
	}
	store, err := os.MkdirTemp(dir, "nats-")
	if err != nil {
		return nil, err
	}
	for i := range n {
		cfg := natsbox.ServerConfig{
			Port:     -1,
			StoreDir: filepath.Join(store, fmt.Sprint(i+1)),
			// MaxConsumers 0: unlimited; every agent's spec watch is one.
			Configure: func(o *server.Options) {
				if n == 1 {
					return
				}
				o.ServerName = fmt.Sprintf("s%d", i+1)
				o.Cluster = server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: routes[i]}
				o.Routes = jscluster.Routes(routes)
			},
		}
		srv, err := natsbox.StartServer(sctx, cfg)
		if err != nil {
			return nil, err
		}
		cfg.Port = srv.Addr().(*net.TCPAddr).Port // the same port when it starts again
		e.servers = append(e.servers, srv)
		e.configs = append(e.configs, cfg)
	}
	urls := make([]string, n)
	for i, s := range e.servers {
		urls[i] = s.ClientURL()
	}
	e.urls = strings.Join(urls, ",")
	if n > 1 {
		if err := waitCluster(ctx, e.servers); err != nil {
			return nil, err
		}
	}
	if e.nc, err = nats.Connect(e.urls, nats.Name("mms bench")); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return nil, err
	}
	if err := e.provision(ctx, n); err != nil {
		return nil, err
	}
	if e.obs, err = observe(e.nc); err != nil {
		return nil, err
	}
	return e, nil
}

// provision creates what `mms init --replicas N` creates for a fleet (the
// spec and status buckets, the events stream and the archive store) and
// binds the spec bucket and the store. A new cluster may not have placed
// its first stream yet: creation is retried for a while.
func (e *natsEnv) provision(ctx context.Context, replicas int) error {
	f := provision.Defaults()
	f.Replicas = replicas
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e.tryProvision(ctx, f)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *natsEnv) tryProvision(ctx context.Context, f provision.Fleet) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := provision.Apply(cctx, e.js, f); err != nil {
		return err
	}
	var err error
	if e.specs, err = e.js.KeyValue(cctx, f.SpecBucket); err != nil {
		return fmt.Errorf("bind the spec bucket: %w", err)
	}
	if e.objects, err = e.js.ObjectStore(cctx, archiveBucket); err != nil {
		return fmt.Errorf("bind the archive store: %w", err)
	}
	return nil
}

// put writes a spec envelope to key of the spec bucket.
func (e *natsEnv) put(ctx context.Context, key string, env []byte) error {
	if _, err := e.specs.Put(ctx, key, env); err != nil {
		return fmt.Errorf("put %s/%s: %w", mmsmanager.DefaultBucket, key, err)
	}
	return nil
}

// upload stores a in the archive store as object and returns its entry.
func (e *natsEnv) upload(ctx context.Context, a archive, object string) (spec.Machine, error) {
	if _, err := e.objects.Put(ctx, jetstream.ObjectMeta{Name: object}, bytes.NewReader(a.data)); err != nil {
		return spec.Machine{}, fmt.Errorf("upload %s: %w", object, err)
	}
	return a.entry("nats://" + archiveBucket + "/" + object), nil
}

// restart stops every server at once and starts them again on the same
// ports and stores, and returns once they form a cluster again. The
// servers run in this process: they stop cleanly (Shutdown), not as a
// crash would.
func (e *natsEnv) restart(ctx context.Context) error {
	for _, s := range e.servers {
		s.Shutdown()
	}
	for _, s := range e.servers {
		s.WaitForShutdown()
	}
	for i, cfg := range e.configs {
		srv, err := natsbox.StartServer(context.WithoutCancel(ctx), cfg) // close stops it
		if err != nil {
			return fmt.Errorf("bench: start server %d again: %w", i+1, err)
		}
		e.servers[i] = srv
	}
	if len(e.servers) > 1 {
		return waitCluster(ctx, e.servers)
	}
	return nil
}

// close disconnects and stops the servers, waiting for their stores.
func (e *natsEnv) close() {
	if e.obs != nil {
		e.obs.close()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	e.cancel()
	for _, s := range e.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// waitCluster waits until the servers have a JetStream meta leader that
// sees every peer.
func waitCluster(ctx context.Context, servers []*server.Server) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := jscluster.Ready(servers)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startWebFleet starts servers embedded servers under dir (see startNATS),
// publishes versions 0..rounds of web where the agents fetch them and
// puts version 0 under key of the spec bucket; version k is fetched from
// putSource(sources, k) (SourceNATS, SourceHTTP), over http:// from web.
// stop stops it all.
func (b *bench) startWebFleet(ctx context.Context, dir string, servers, rounds int, key string, sources []string) (env *natsEnv, versions []spec.Machine, web *webServer, stop func(), err error) {
	if env, err = startNATS(ctx, dir, servers); err != nil {
		return nil, nil, nil, nil, err
	}
	versions, web, err = b.webVersions(ctx, env, rounds, sources)
	if err != nil {
		env.close()
		return nil, nil, nil, nil, err
	}
	stop = func() {
		web.Close()
		env.close()
	}
	first, err := b.keys.seal(1, versions[:1])
	if err == nil {
		err = env.put(ctx, key, first)
	}
	if err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	return env, versions, web, stop, nil
}
