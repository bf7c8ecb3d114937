package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/provision"
)

// embeddedMaxMemory caps the embedded server's JetStream memory storage;
// its file storage is capped at provision.EmbeddedMaxStore, which the
// resources it creates (provision.Embedded) leave room in for governors.
const embeddedMaxMemory = 64 << 20

// embeddedMaxConns is how many client connections the embedded server
// takes at once (authenticated or still logging in) in a process allowed
// fdLimit open files: the limit less what the agent keeps for itself (its
// store, machines, downloads, metrics), half the limit up to 4,096, and at
// most nats-server's default of 65,536 (also when the limit is unknown, 0).
// A local user who opens connections as fast as they can cannot take the
// descriptors the agent's machines need: the rest wait in the kernel.
func embeddedMaxConns(fdLimit int) int {
	if fdLimit <= 0 {
		return server.DEFAULT_MAX_CONNECTIONS
	}
	return min(max(fdLimit-min(fdLimit/2, 4096), 16), server.DEFAULT_MAX_CONNECTIONS)
}

// embedded is the agent's running embedded server.
type embedded struct {
	srv  *server.Server
	url  string
	stop func() // stops accepting clients
}

// shutdown stops accepting clients, then shuts the server down and waits
// for its store to be flushed.
func (e *embedded) shutdown() {
	e.stop()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// startEmbedded starts the agent's own NATS server, which lets in only
// auth's nkey user and offers TLS with auth's certificate (which clients
// pin), and accepts at most maxConns clients at once on the --listen
// address (natsbox.ServeLimited). The URL is the one the agent connects to.
// The caller shuts it down (it is not tied to ctx, so the agent's last
// status write can still reach it).
func startEmbedded(ctx context.Context, cfg agentConfig, auth *natsbox.LocalAuth, maxConns int, log *slog.Logger) (*embedded, error) {
	port := max(cfg.listenPort, 0) // -1: any free port
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.listenHost, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("start the embedded nats server (give --listen another address, or --server to use an existing NATS): %w", err)
	}
	srv, err := natsbox.StartServer(context.WithoutCancel(ctx), natsbox.ServerConfig{
		Host:      cfg.listenHost,
		Port:      cfg.listenPort,
		StoreDir:  cfg.storeDir(),
		MaxStore:  provision.EmbeddedMaxStore,
		MaxMemory: embeddedMaxMemory,
		Log:       log,
		Configure: func(opts *server.Options) {
			auth.Configure(opts)
			opts.MaxConn = maxConns
			opts.DontListen = true // clients come through ln
		},
	})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("start the embedded nats server: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	return &embedded{
		srv:  srv,
		url:  "nats://" + net.JoinHostPort(connectHost(cfg.listenHost), strconv.Itoa(addr.Port)),
		stop: natsbox.ServeLimited(srv, ln, maxConns, log),
	}, nil
}

// connectHost is the address a client on this machine uses to reach a
// server listening on host: loopback for the unspecified addresses.
func connectHost(host string) string {
	ip := net.ParseIP(host)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return host
	case ip.To4() != nil:
		return "127.0.0.1"
	default:
		return "::1"
	}
}

// isLoopback reports whether host only listens on this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// provisionEmbedded creates what a single-node setup needs on the agent's
// own server, as mms init would with one replica and smaller sizes
// (provision.Embedded): the spec and status buckets, the events stream and
// the archive store. Existing ones get those settings; running it again
// changes nothing.
func provisionEmbedded(ctx context.Context, js jetstream.JetStream, bucket string, log *slog.Logger) error {
	outcomes, err := provision.Apply(ctx, js, provision.Embedded(bucket))
	for _, o := range outcomes {
		if o.Action == provision.Created || o.Action == provision.Updated {
			changes := make([]string, len(o.Changes))
			for i, c := range o.Changes {
				changes[i] = c.String()
			}
			log.Info(string(o.Action)+" "+o.Resource.Kind, "name", o.Resource.Name, "stream", o.Resource.Stream,
				"settings", o.Resource.Want.String(), "changes", strings.Join(changes, "; "))
		}
	}
	if err != nil {
		return fmt.Errorf("set up the embedded server: %w", err)
	}
	return nil
}

// showServers lists server URLs for a person, without credentials.
func showServers(servers []string) string {
	var shown []string
	for _, entry := range servers {
		for _, s := range strings.Split(entry, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if u, err := url.Parse(s); err == nil && u.User != nil {
				u.User = nil
				s = u.String()
			}
			shown = append(shown, s)
		}
	}
	return strings.Join(shown, ",")
}

// natsContextName is the nats CLI context the agent of the default state
// directory writes for its embedded server.
const natsContextName = "mms"

// natsContextMarker starts the description of every context file the agent
// writes, so that it never overwrites a context somebody else made.
const natsContextMarker = "written by mms agent: "

// externalContextMarker starts the description of the context file a
// client agent (one that uses an external NATS) writes in its state
// directory, where an agent with the embedded server writes its own: the
// commands that look for the agent there learn that it has no server of
// its own, and which servers it uses.
const externalContextMarker = natsContextMarker + "this agent uses an external NATS"

// writeExternalContext records in stateDir's context file that the agent
// uses the external NATS of connect: its servers (or its nats context),
// without credentials, which are a node's and not for commands. Failing
// to write it is logged, not fatal.
func writeExternalContext(stateDir string, connect natsbox.ConnectConfig, log *slog.Logger) {
	c := natsbox.CLIContext{
		Description: externalContextMarker + " (not an embedded server); its servers, without its credentials",
		URL:         showServers(connect.Servers),
	}
	if c.URL == "" && connect.Context != "" {
		c.Description = externalContextMarker + " (not an embedded server): the servers of the nats context " + connect.Context
	}
	if err := natsbox.WriteContextFile(filepath.Join(stateDir, natsbox.LocalContextFile), c); err != nil {
		log.Warn("could not record in the state directory that this agent uses an external NATS", "error", err)
	}
}

// localContextDescription is the description of the context files written
// for the embedded server of the agent with stateDir.
func localContextDescription(stateDir string) string {
	return natsContextMarker + "the embedded NATS server of the agent with state " + stateDir
}

// writeNATSContext writes the nats CLI context "mms" (0600, in the nats
// CLI's context directory) c, the embedded server's, so that 'nats
// --context mms …' works, and returns its name. It does so only for the
// agent of the default state directory (another agent's would replace it),
// never over a context it did not write, and returns "" when it did not
// write one; failing to write it is logged, not fatal.
func writeNATSContext(stateDir string, c natsbox.CLIContext, log *slog.Logger) string {
	if !isDefaultStateDir(stateDir) {
		return ""
	}
	path, err := natsbox.ContextPath(natsContextName)
	if err != nil {
		log.Warn("no nats CLI context written", "error", err)
		return ""
	}
	if old, err := natsbox.LoadContextFile(path); err == nil && !strings.HasPrefix(old.Description, natsContextMarker) {
		log.Warn("not replacing nats CLI context "+natsContextName+": it was not written by mms agent", "file", path)
		return ""
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Warn("no nats CLI context written", "error", err)
		return ""
	}
	if err := natsbox.WriteContextFile(path, c); err != nil {
		log.Warn("no nats CLI context written", "error", err)
		return ""
	}
	return natsContextName
}

// isDefaultStateDir reports whether dir is the default state directory.
func isDefaultStateDir(dir string) bool {
	def, err := agentStateDir("")
	return err == nil && def == dir
}

// requireAuthentication waits (at most timeout) for client to connect and
// refuses a server that lets anyone in: with --insecure-unsigned, whoever
// can write the spec runs any command on this node, so at least writing it
// must take credentials.
func requireAuthentication(ctx context.Context, client *natsbox.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !client.Conn.IsConnected() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("--insecure-unsigned: NATS did not answer within --timeout %v, so the agent cannot check that it requires authentication (without signatures, anyone who can write the spec runs any command on this node): start NATS first, or sign specs and give --public-key", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !client.Conn.AuthRequired() {
		return fmt.Errorf("--insecure-unsigned: the NATS server at %s does not require authentication, so anyone who can reach it could write the spec and run any command on this node: use a server that requires credentials (--creds, --nkey or --context), or sign specs and give --public-key", client.Conn.ConnectedUrlRedacted())
	}
	return nil
}
