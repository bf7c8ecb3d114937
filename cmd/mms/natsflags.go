package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mms-io/mms/internal/natsbox"
)

// natsFlags are the connection flags shared by the commands that talk to
// NATS (put, events, status, governor, archive create, and the agent).
type natsFlags struct {
	server  string
	context string
	// stateDir (--state-dir, operator commands only) names the local
	// agent whose embedded server to use.
	stateDir string
	creds    string
	nkey     string
	tlsCert  string
	tlsKey   string
	tlsCA    string
	timeout  time.Duration
}

// register adds the connection flags of the agent.
func (n *natsFlags) register(f *pflag.FlagSet) {
	f.StringVar(&n.server, "server", "", "NATS server URLs, comma-separated (default: the context's, else $NATS_URL, the selected nats context, the local agent's server)")
	f.StringVar(&n.context, "context", "", "start from the nats CLI context `NAME`")
	f.StringVar(&n.creds, "creds", "", "NATS credentials (JWT) file")
	f.StringVar(&n.nkey, "nkey", "", "NATS nkey seed file")
	f.StringVar(&n.tlsCert, "tls-cert", "", "client certificate for mutual TLS")
	f.StringVar(&n.tlsKey, "tls-key", "", "key of --tls-cert")
	f.StringVar(&n.tlsCA, "tls-ca", "", "CA bundle that verifies the server")
	f.DurationVar(&n.timeout, "timeout", 10*time.Second, "give up after this long")
}

// registerClient adds the connection flags of an operator command to f:
// the agent's, and --state-dir to find a local agent's embedded server.
// It tells how NATS is found at the end of cmd's help.
func (n *natsFlags) registerClient(cmd *cobra.Command, f *pflag.FlagSet) {
	n.register(f)
	cmd.Long = strings.TrimRight(cmd.Long, "\n") + "\n\n" + natsLookupHelp
	f.StringVar(&n.stateDir, "state-dir", "", "use the embedded NATS server of the local agent with state `DIR` (default: the default state directory's, when no other NATS is configured)")
}

// natsLookupHelp is the help text of how operator commands find NATS.
const natsLookupHelp = `Finding NATS: like the nats CLI, the first of --server, --context,
$NATS_CONTEXT, --state-dir, $NATS_URL, the selected nats context ('nats
context select'), then the embedded server of the local agent (found
through <state>/` + natsbox.LocalContextFile + ` in the default state directory).
--creds, --nkey and the TLS flags apply to whichever is used. --timeout
bounds the connection too.`

// config turns the flags into a natsbox connection config.
func (n *natsFlags) config(a *app, name string) natsbox.ConnectConfig {
	cfg := natsbox.ConnectConfig{
		Creds:   n.creds,
		NKey:    n.nkey,
		TLSCert: n.tlsCert,
		TLSKey:  n.tlsKey,
		TLSCA:   n.tlsCA,
		Context: n.context,
		Name:    name,
		Log:     a.connLog(),
	}
	if strings.TrimSpace(n.server) != "" {
		cfg.Servers = []string{n.server}
	}
	return cfg
}

// natsConn is an operator command's connection; it names asynchronous
// server errors such as permission violations, which otherwise surface
// only as timeouts.
type natsConn struct {
	*natsbox.Client
}

// explain appends the permission violations and last asynchronous error the
// server reported to err.
func (c natsConn) explain(err error) error {
	st := c.Status.Snapshot()
	if len(st.PermissionViolations) > 0 {
		var msgs []string
		for _, v := range st.PermissionViolations {
			msgs = append(msgs, v.Message)
		}
		return fmt.Errorf("%w (server said: %s)", err, strings.Join(msgs, "; "))
	}
	if st.LastError != "" {
		return fmt.Errorf("%w (last server error: %s)", err, st.LastError)
	}
	return err
}

// ConnectedUrlRedacted returns the URL of the server the client is on.
func (c natsConn) ConnectedUrlRedacted() string { return c.Conn.ConnectedUrlRedacted() }

// lookup is where an operator command looks for NATS.
func (n *natsFlags) lookup() natsbox.Lookup {
	l := natsbox.Lookup{Server: strings.TrimSpace(n.server), Context: n.context, StateDir: n.stateDir}
	if dir, err := agentStateDir(""); err == nil {
		l.DefaultStateDir = dir
	}
	return l
}

// connect dials NATS for an operator command, found as lookup says, within
// --timeout: it fails at once when no server answers, saying where it
// looked and what to do.
func (n *natsFlags) connect(ctx context.Context, a *app, name string) (natsConn, error) {
	found, err := n.lookup().Find()
	if err != nil {
		return natsConn{}, fmt.Errorf("find nats: %w", err)
	}
	cfg := n.config(a, name)
	cfg.Servers, cfg.Context, cfg.ContextFile = found.Servers, found.Context, found.ContextFile
	cfg.FailFast = true
	cfg.ConnectTimeout = n.timeout
	c, err := natsbox.Connect(ctx, cfg)
	if err != nil {
		if found.ContextFile != "" && natsbox.IsImpostor(err) {
			return natsConn{}, impostorError(found.ContextFile, err)
		}
		hint := "is mms agent running? give --server or --context"
		if errors.Is(err, fs.ErrPermission) {
			hint = "only the agent's user (and root) may read its credentials: run the command as that user, or give --server or --context"
		}
		return natsConn{}, fmt.Errorf("%w\nlooked for NATS in this order: %s\n%s", err, strings.Join(found.Tried, "; "), hint)
	}
	return natsConn{Client: c}, nil
}

// impostorError says that the server found through a local agent's
// context file (its state directory's) could not prove it is that agent's
// embedded server, and that nothing was sent to it.
func impostorError(contextFile string, err error) error {
	where := "its port"
	if c, cerr := natsbox.LoadContextFile(contextFile); cerr == nil {
		where = c.URL
	}
	return fmt.Errorf("%s is not the embedded NATS server of the agent with state %s: it did not prove the TLS identity pinned in %s, so another program may be listening on the agent's port while the agent is down; no credentials were sent to it. Check that the agent runs, and which program listens there (%w)",
		where, filepath.Dir(contextFile), contextFile, err)
}
