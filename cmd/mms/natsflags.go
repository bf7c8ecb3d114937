package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
$NATS_CONTEXT, --state-dir (or $` + stateDirEnv + `, when its agent runs the
embedded server), $NATS_URL, the selected nats context ('nats context
select'), then the embedded server of the local agent (found through
<state>/` + natsbox.LocalContextFile + ` in the default state directory). With none of
them the command fails, saying where it looked.
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
	// from is where the command found NATS (natsbox.Found.From).
	from string
}

// where names the server the command is on, for its output: the URL, and
// the server's name when it has one besides its id ("nats://nats1:4222
// (server nats1)").
func (c natsConn) where() string {
	url := c.Conn.ConnectedUrlRedacted()
	if name := c.Conn.ConnectedServerName(); name != "" && name != c.Conn.ConnectedServerId() {
		return fmt.Sprintf("%s (server %s)", url, name)
	}
	return url
}

// describe is where, and how the command found it unless it was named
// with --server: "nats://127.0.0.1:4222, found through the local mms agent
// (/var/lib/mms/nats-context.json)".
func (c natsConn) describe() string {
	if c.from == "" || strings.HasPrefix(c.from, "--server ") {
		return c.where()
	}
	return c.where() + ", found through " + c.from
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

// noAnswer is the error of a request every node answers (mms reconcile,
// mms plan, mms machine transition) that no node matching identity
// answered within wait.
func (c natsConn) noAnswer(wait time.Duration, identity string) error {
	return c.explain(fmt.Errorf("no node answered within %v (identity %q): are agents connected to %s?", wait, identity, c.ConnectedUrlRedacted()))
}

// ConnectedUrlRedacted returns the URL of the server the client is on.
func (c natsConn) ConnectedUrlRedacted() string { return c.Conn.ConnectedUrlRedacted() }

// lookup is where an operator command looks for NATS. An explicit
// $MMS_STATE_DIR names the local agent as --state-dir does, when that
// agent runs the embedded server (else it is only the default state
// directory, looked at last, where a client agent says which NATS it
// uses).
func (n *natsFlags) lookup() natsbox.Lookup {
	l := natsbox.Lookup{Server: strings.TrimSpace(n.server), Context: n.context, StateDir: n.stateDir}
	if dir, err := agentStateDir(""); err == nil {
		l.DefaultStateDir = dir
		if os.Getenv(stateDirEnv) != "" && l.StateDir == "" && embeddedAgentIn(dir) {
			l.StateDir, l.StateDirSource = dir, "$"+stateDirEnv
		}
	}
	return l
}

// embeddedAgentIn reports whether the state directory dir holds the
// context of an agent's embedded server.
func embeddedAgentIn(dir string) bool {
	c, err := natsbox.LoadContextFile(filepath.Join(dir, natsbox.LocalContextFile))
	return err == nil && !strings.HasPrefix(c.Description, externalContextMarker)
}

// again returns the connection flags given to the command, as they would
// be typed again (shell-quoted), for the commands a hint suggests.
func (n *natsFlags) again() string {
	var b strings.Builder
	for _, f := range []struct{ name, value string }{
		{"--server", showServers([]string{n.server})}, {"--context", n.context}, {"--state-dir", n.stateDir},
		{"--creds", n.creds}, {"--nkey", n.nkey}, {"--tls-cert", n.tlsCert}, {"--tls-key", n.tlsKey}, {"--tls-ca", n.tlsCA},
	} {
		if strings.TrimSpace(f.value) != "" {
			b.WriteString(" " + f.name + " " + shellQuote(f.value))
		}
	}
	return b.String()
}

// connect dials NATS for an operator command, found as lookup says, within
// --timeout: it fails at once when no server answers, saying where it
// looked and what to do.
func (n *natsFlags) connect(ctx context.Context, a *app, name string) (natsConn, error) {
	found, err := n.lookup().Find()
	if errors.Is(err, natsbox.ErrNoNATS) {
		return natsConn{}, fmt.Errorf("%w\nstart an agent on this machine (mms agent --public-key \"$(cat ops.pub)\"; its commands then find it), or say where NATS is: --server URL (or $NATS_URL), --context NAME, --state-dir DIR", err)
	}
	if err != nil {
		return natsConn{}, fmt.Errorf("find nats: %w", err)
	}
	if found.ContextFile != "" {
		if err := checkLocalAgent(found.ContextFile); err != nil {
			return natsConn{}, err
		}
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
		switch {
		case errors.Is(err, fs.ErrPermission):
			hint = "only the agent's user (and root) may read its credentials: run the command as that user, or give --server or --context"
		case errors.Is(err, nats.ErrAuthorization) && found.ContextFile != "":
			hint = "the server refused the credentials in " + found.ContextFile + ": is it still the agent that wrote them? (an agent rewrites them when it starts: run the command again, or restart the agent)"
		case errors.Is(err, nats.ErrAuthorization):
			hint = "the server refused the credentials: give the ones it expects (--creds FILE, --nkey FILE, or a --context that has them)"
		}
		return natsConn{}, fmt.Errorf("%w\nlooked for NATS in this order: %s\n%s", err, strings.Join(found.Tried, "; "), hint)
	}
	return natsConn{Client: c, from: found.From}, nil
}

// checkLocalAgent fails, saying why, when the context file of a local
// agent cannot lead to its embedded server: there is none (no agent, or
// one that never started), or the agent uses an external NATS (it writes
// a context that says so, with its servers and without credentials).
func checkLocalAgent(contextFile string) error {
	dir := filepath.Dir(contextFile)
	c, err := natsbox.LoadContextFile(contextFile)
	switch {
	case errors.Is(err, natsbox.ErrContextNotFound):
		return fmt.Errorf("no mms agent with an embedded NATS server keeps its state in %s (there is no %s): is the directory right, and has its agent started? (an agent that uses an external NATS with --server writes none of its own)", dir, contextFile)
	case err != nil:
		return nil // natsbox.Connect says what is wrong with it
	case strings.HasPrefix(c.Description, externalContextMarker):
		servers := c.URL
		if servers == "" {
			servers = strings.TrimPrefix(strings.TrimPrefix(c.Description, externalContextMarker), " (not an embedded server): ")
		}
		return fmt.Errorf("the mms agent with state %s uses an external NATS (%s), not an embedded server: give that server with --server (or a --context) and your own credentials (--creds, --nkey): the agent's are a node's, not an operator's", dir, servers)
	}
	return nil
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
