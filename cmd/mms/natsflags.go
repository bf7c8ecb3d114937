package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/mms-io/mms/internal/natsbox"
)

// natsFlags are the connection flags shared by the commands that talk to
// NATS as a client (put, events, status, governor).
type natsFlags struct {
	server  string
	context string
	creds   string
	nkey    string
	tlsCert string
	tlsKey  string
	tlsCA   string
	timeout time.Duration
}

func (n *natsFlags) register(f *pflag.FlagSet) {
	f.StringVar(&n.server, "server", "", "NATS server URLs, comma-separated (default: the context's, else nats://127.0.0.1:4222)")
	f.StringVar(&n.context, "context", "", "start from the nats CLI context `NAME`")
	f.StringVar(&n.creds, "creds", "", "NATS credentials (JWT) file")
	f.StringVar(&n.nkey, "nkey", "", "NATS nkey seed file")
	f.StringVar(&n.tlsCert, "tls-cert", "", "client certificate for mutual TLS")
	f.StringVar(&n.tlsKey, "tls-key", "", "key of --tls-cert")
	f.StringVar(&n.tlsCA, "tls-ca", "", "CA bundle that verifies the server")
	f.DurationVar(&n.timeout, "timeout", 10*time.Second, "give up after this long")
}

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

// connect dials NATS for an operator command: it fails at once when no
// server answers.
func (n *natsFlags) connect(ctx context.Context, a *app, name string) (natsConn, error) {
	cfg := n.config(a, name)
	cfg.FailFast = true
	c, err := natsbox.Connect(ctx, cfg)
	if err != nil {
		return natsConn{}, err
	}
	return natsConn{Client: c}, nil
}
