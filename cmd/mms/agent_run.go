package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/fdlimit"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodemetrics"
	"github.com/mms-io/mms/nodestatus"
)

// runAgent runs the node until ctx is done. Shutdown order: the host stops
// every machine and returns, the status writer writes the last document,
// the NATS connection closes, then the embedded server (if any) shuts down
// and flushes its store.
func (a *app) runAgent(ctx context.Context, cfg agentConfig) error {
	log := newLogger(a.stderr, cfg.logJSON, cfg.logLevel)
	if cfg.manager.Trust.Unsigned() {
		log.Warn("INSECURE: --insecure-unsigned is set: specs are NOT verified, so anyone who can write " +
			cfg.manager.Bucket + "/" + cfg.manager.Key + " runs any code on this node. Use it only to try mms out.")
	}
	// Strict modes: directories others could change are refused before
	// anything is created in them.
	if err := checkAgentDirs(cfg.node.StateDir, cfg.node.MachinesDir, cfg.node.DataDir); err != nil {
		return err
	}
	// One agent per state directory (and machines and data directory):
	// nothing is read or written there before the locks are held.
	release, err := lockDirs("mms agent", cfg.node.StateDir, cfg.node.MachinesDir, cfg.node.DataDir)
	if err != nil {
		return err
	}
	defer release()

	// Every descriptor the hard limit allows (Go raises the soft limit on
	// Linux already; this says so, and does it elsewhere).
	fds, err := fdlimit.Raise(0)
	if err != nil {
		log.Warn("could not raise the open file limit", "error", err)
	}

	connect := cfg.connect
	connect.Log = log.With("component", "nats")
	connect.FailFast = false // a node runs its machines while NATS is away
	banner := bannerInfo{shown: showServers(connect.Servers)}
	if cfg.embedded {
		serverLog := newLogger(a.stderr, cfg.logJSON, max(cfg.logLevel, slog.LevelWarn))
		if cfg.logLevel <= slog.LevelDebug {
			serverLog = log
		}
		local := filepath.Join(cfg.node.StateDir, natsbox.LocalContextFile)
		auth, err := natsbox.LoadLocalAuth(cfg.node.StateDir, natsbox.LocalHosts(cfg.listenHost), time.Now())
		if err != nil {
			return fmt.Errorf("set up the embedded nats server's credentials: %w", err)
		}
		maxConns := embeddedMaxConns(fds)
		emb, err := startEmbedded(ctx, cfg, auth, maxConns, serverLog)
		if err != nil {
			return err
		}
		url := emb.url
		log.Info("embedded nats server connection limit", "max_connections", maxConns, "open_files_limit", fds)
		defer func() {
			emb.shutdown()
			log.Info("embedded nats server stopped")
		}()
		// The agent, and the commands on this machine, connect through
		// this file: the URL, the nkey seed and the pinned certificate.
		c := auth.Context(localContextDescription(cfg.node.StateDir), url)
		if err := natsbox.WriteContextFile(local, c); err != nil {
			return err
		}
		// The agent itself connects in-process, with the seed: no TLS,
		// no socket, and no wait behind other clients (ServeLimited).
		connect.Servers, connect.NKey, connect.InProcess = []string{url}, auth.SeedFile, emb.srv
		banner.shown, banner.credentials = url, local
		banner.natsContext = writeNATSContext(cfg.node.StateDir, c, log)
		if !isLoopback(cfg.listenHost) {
			log.Warn("the embedded nats server listens on "+cfg.listenHost+": anyone who can reach it can connect and try to log in; clients on other machines need "+auth.SeedFile+" (--nkey) and "+auth.CertFile+" (--tls-ca); use a NATS deployment with per-node permissions for a fleet",
				"listen", cfg.listenHost)
		}
	} else {
		writeExternalContext(cfg.node.StateDir, connect, log)
	}

	client, err := natsbox.Connect(context.WithoutCancel(ctx), connect)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer client.Close()
	if cfg.manager.Trust.Unsigned() && !cfg.embedded {
		if err := requireAuthentication(ctx, client, cfg.timeout); err != nil {
			return err
		}
	}
	js, err := client.JetStream()
	if err != nil {
		return err
	}
	if cfg.embedded {
		pctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		err := provisionEmbedded(pctx, js, cfg.manager.Bucket, log)
		cancel()
		if err != nil {
			return err
		}
	}
	a.printAgentBanner(cfg, connect, banner, log)

	rec := nodestatus.NewRecorder()
	defer client.Status.OnReconnect(rec.Touch)()
	settings := cfg.manager
	settings.Status = rec // the manager reports every pass to the status document
	// Rollouts gate each wave on what the other agents report: the view
	// follows their status documents while the agent runs.
	view := nodestatus.NewView(js, "", log.With("component", "fleet"))
	settings.Fleet = view
	var publisher agent.Publisher = nodestatus.Publisher{Next: agent.NATSPublisher{Conn: client.Conn}, Recorder: rec}
	hostCfg := agent.HostConfig{
		MachinesDir: cfg.node.MachinesDir,
		DataDir:     cfg.node.DataDir,
		Identity:    cfg.node.Identity,
		Facts:       agent.NewFactsFile(cfg.factsFile, log).Facts,
		Log:         log,
		Conn:        client.Conn,
		OnReconnect: client.Status.OnReconnect,
		// The status document is rebuilt when what it shows changed.
		OnChange: rec.Touch,
		NoNotify: cfg.noNotify,
	}
	var running atomic.Pointer[agent.Host] // for the metrics, which may be scraped before the host exists
	if cfg.metricsListen != "" {
		metrics := nodemetrics.New(nodemetrics.Config{
			States: func() []agent.MachineStatus {
				if h := running.Load(); h != nil {
					return h.States()
				}
				return nil
			},
			NATS:    client.Status.Snapshot,
			Manager: managerMachine(),
		})
		settings.Status = manager.Reporters{rec, metrics}
		publisher = metrics.Publisher(publisher)
		hostCfg.Metrics = metrics.Sink
		stop, err := serveMetrics(cfg.metricsListen, metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	hostCfg.Publisher, hostCfg.Node = publisher, agent.WithSetting(cfg.node, settings)
	host, err := agent.NewHost(hostCfg)
	if err != nil {
		return err
	}
	running.Store(host)
	agentVersion := currentBuild().Version
	writer, err := nodestatus.NewWriter(nodestatus.WriterConfig{
		Identity:  cfg.node.Identity,
		Version:   agentVersion,
		Recorder:  rec,
		Trust:     cfg.manager.Trust,
		States:    host.States,
		NATS:      client.Status.Snapshot,
		JetStream: js,
		Heartbeat: cfg.heartbeat,
		Timeout:   cfg.timeout,
		Log:       log.With("component", "status"),
	})
	if err != nil {
		return err
	}
	log.Info("agent started", "identity", cfg.node.Identity, "version", agentVersion,
		"machines_dir", cfg.node.MachinesDir, "data_dir", cfg.node.DataDir,
		"trusted_key_ids", cfg.manager.Trust.KeyIDs(), "threshold", cfg.manager.Trust.Threshold(),
		"compiled_in", agent.RegisteredMachines(), "status_key", nodestatus.Bucket+"/"+writer.Key())

	wctx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriter()
	var wg sync.WaitGroup
	wg.Go(func() { _ = writer.Run(wctx) })
	wg.Go(func() { _ = view.Run(wctx) })
	// Operators fire transitions (mms machine transition) through it.
	wg.Go(func() {
		if err := host.ServeTransitions(wctx); err != nil {
			log.Error("transition requests are not answered", "error", err)
		}
	})
	err = host.Run(ctx)
	log.Info("machines stopped; writing the last status")
	stopWriter()
	wg.Wait()
	return err
}

// bannerInfo is what the banner shows beyond the configuration.
type bannerInfo struct {
	// shown is the server list, for a person.
	shown string
	// credentials is the embedded server's local context file.
	credentials string
	// natsContext is the nats CLI context written for the embedded
	// server, "" if none.
	natsContext string
}

// printAgentBanner tells a person where the agent listens and what to run
// next: archive a machine into the server's object store (which prints its
// machines.json entry), then sign and publish the list. With --log-json it
// is one log record, so stderr stays JSON lines.
func (a *app) printAgentBanner(cfg agentConfig, connect natsbox.ConnectConfig, b bannerInfo, log *slog.Logger) {
	shown := b.shown
	use := " --server " + shellQuote(shown)
	switch {
	case cfg.embedded:
		// Commands find the embedded server through the state directory:
		// by themselves in the default one.
		use = " --state-dir " + shellQuote(cfg.node.StateDir)
		if isDefaultStateDir(cfg.node.StateDir) {
			use = ""
		}
	case len(connect.Servers) == 0:
		shown = "the servers of context " + connect.Context
		use = " --context " + shellQuote(connect.Context)
	}
	operator := ""
	if !cfg.embedded {
		use, operator = withOperatorCredentials(use, connect)
	}
	sign := "--key-file ops.key"
	if cfg.manager.Trust.Unsigned() {
		sign = "--unsigned"
	}
	archive := fmt.Sprintf("mms archive create DIR --upload nats://%s%s", bannerArchiveBucket, use)
	next := fmt.Sprintf("mms pack machines.json %s | mms put%s", sign, use)
	natsCLI := ""
	if b.natsContext != "" {
		natsCLI = "nats --context " + b.natsContext + " kv ls"
	}
	if cfg.logJSON {
		log.Info("agent nats ready", "embedded", cfg.embedded, "servers", shown, "archive", archive, "next", next, "nats_cli", natsCLI, "operator_credentials", operator)
		return
	}
	if cfg.embedded {
		fmt.Fprintf(a.stderr, "mms agent: embedded NATS server listening on %s (store %s; clients log in with the credentials in %s)\n", shown, cfg.storeDir(), b.credentials)
	} else {
		fmt.Fprintf(a.stderr, "mms agent: using NATS at %s (machines run while it is unreachable)\n", shown)
	}
	fmt.Fprintf(a.stderr, `mms agent: machines in %s, data in %s
mms agent: next, from another terminal: archive each machine directory (DIR holds its machine.yaml)
mms agent: into NATS, list the entries it prints in machines.json ([entry, ...]), then sign and publish the list:

    %s
    %s

  then follow it:  mms events%s
                   mms status%s
`, cfg.node.MachinesDir, cfg.node.DataDir, archive, next, use, use)
	if natsCLI != "" {
		fmt.Fprintf(a.stderr, "  the nats CLI:    %s\n", natsCLI)
	}
	if operator != "" {
		fmt.Fprintf(a.stderr, "  %s\n", operator)
	}
}

// Placeholders the banner of a client agent puts where an operator's
// credentials go in the commands it prints.
const (
	operatorCredsFile = "OPERATOR.creds"
	operatorNKeyFile  = "OPERATOR.nk"
	operatorCertFile  = "OPERATOR.crt"
	operatorKeyFile   = "OPERATOR.key"
)

// withOperatorCredentials adds to use, the connection flags of the
// commands a client agent's banner prints, the credential flags of the
// kind the agent itself uses, with placeholders: an operator publishes
// with credentials of their own (a node's may not write the spec). The CA
// that verifies the server is the same for everyone. It returns the
// flags and a line that says what the placeholders stand for, "" when
// the agent uses no credentials.
func withOperatorCredentials(use string, connect natsbox.ConnectConfig) (string, string) {
	var placeholders []string
	add := func(flag, file string) {
		use += " " + flag + " " + file
		placeholders = append(placeholders, file)
	}
	if connect.Creds != "" {
		add("--creds", operatorCredsFile)
	}
	if connect.NKey != "" {
		add("--nkey", operatorNKeyFile)
	}
	if connect.TLSCert != "" {
		add("--tls-cert", operatorCertFile)
		add("--tls-key", operatorKeyFile)
	}
	if connect.TLSCA != "" {
		use += " --tls-ca " + shellQuote(connect.TLSCA)
	}
	if len(placeholders) == 0 {
		return use, ""
	}
	return use, "credentials:     " + strings.Join(placeholders, ", ") + " stand for the operator's own (this node's may not publish specs; 'mms nats-config' writes operator.nk)"
}

// bannerArchiveBucket is the object store the banner suggests uploading
// machine archives to.
const bannerArchiveBucket = "ARCHIVES"

// newLogger returns the agent's logger: text or JSON lines on w.
func newLogger(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// shellSafe matches words a shell takes as they are.
var shellSafe = regexp.MustCompile(`^[-A-Za-z0-9_./:=,@+%]+$`)

// shellQuote quotes word for a POSIX shell when it needs it, so a printed
// command can be pasted.
func shellQuote(word string) string {
	if shellSafe.MatchString(word) {
		return word
	}
	return "'" + strings.ReplaceAll(word, "'", `'\''`) + "'"
}
