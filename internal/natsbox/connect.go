package natsbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/backoff"
)

// Connection tuning shared by every Client.
const (
	// ReconnectBufSize is how much a client buffers (publishes made while
	// disconnected) before such publishes fail with
	// nats.ErrReconnectBufExceeded: 4 MiB, a few thousand events.
	ReconnectBufSize = 4 << 20
	// reconnectMin and reconnectMax bound the exponential reconnect backoff.
	reconnectMin = 250 * time.Millisecond
	reconnectMax = 10 * time.Second
	// pingInterval × maxPingsOut bounds how long a dead server goes unnoticed.
	pingInterval = 20 * time.Second
	// minDialTimeout is the least time a server gets to answer when
	// ConnectTimeout is shared among many.
	minDialTimeout = 50 * time.Millisecond
	maxPingsOut    = 3
)

// ConnectConfig says how to reach NATS. Explicit fields win over the values
// of Context; Creds or NKey replace all of the context's credentials.
type ConnectConfig struct {
	// Servers are server URLs; each entry may itself be a comma-separated
	// list (see ParseServers). Default: the context's url, else
	// nats://127.0.0.1:4222.
	Servers []string
	// Creds is the path of a JWT credentials file.
	Creds string
	// NKey is the path of an nkey seed file.
	NKey string
	// TLSCert and TLSKey are the paths of a client certificate and its key
	// (mutual TLS); TLSCA is the path of the CA bundle that verifies the
	// server.
	TLSCert, TLSKey, TLSCA string
	// Context names an official `nats` CLI context to start from (see
	// LoadContext). Empty uses none: the CLI's selected context is never
	// picked up implicitly.
	Context string
	// ContextFile is the path of a `nats` CLI context file to start from
	// instead of a named Context, such as the one a local agent writes for
	// its embedded server (see Lookup). Set at most one of the two.
	ContextFile string
	// InProcess, when set, is a server in this process to connect to
	// without a network (nats.InProcessServer): Servers are then only
	// what the client reports. An embedded server's own agent uses it, so
	// its connection never waits behind other clients' connections.
	InProcess nats.InProcessConnProvider
	// Name is the connection name the server shows in its monitoring.
	Name string
	// InboxPrefix replaces _INBOX for request replies, so the server can
	// allow each node only its own reply subjects.
	InboxPrefix string
	// FailFast makes Connect fail when no server can be reached now, for
	// operator commands. Otherwise (the agent) Connect returns at once and
	// keeps trying in the background: a node must come up and run its
	// installed machines even while NATS is down. Either way, a client that
	// has connected reconnects forever.
	FailFast bool
	// ConnectTimeout, with FailFast, bounds the first connection: every
	// server in the list gets an equal share of it for its dial and
	// handshake. 0 leaves nats.go's default of 2 s for each server.
	ConnectTimeout time.Duration
	// Log receives connection events; nil discards them.
	Log *slog.Logger
}

// Client is a NATS connection made by Connect with its Status. The
// connection reconnects forever with capped exponential backoff and jitter.
type Client struct {
	// Conn is the connection; hand it to the watchers.
	Conn *nats.Conn
	// Status records the connection's health.
	Status *Status
	// JetStreamDomain and JetStreamAPIPrefix come from the context; use
	// JetStream to honour them.
	JetStreamDomain    string
	JetStreamAPIPrefix string

	closed chan struct{}
	wg     sync.WaitGroup
}

// Connect connects to NATS as cfg says and returns the client. Unless
// cfg.FailFast is set it returns even when no server is reachable yet, and
// the client connects in the background; watch Status. Authentication errors
// are retried too (the server's credentials may be fixed later); they show
// in Status.LastError.
//
// The connection is closed when ctx is done or Close is called.
func Connect(ctx context.Context, cfg ConnectConfig) (*Client, error) {
	set, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	opts, err := set.options()
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		Status:             newStatus(),
		JetStreamDomain:    set.jsDomain,
		JetStreamAPIPrefix: set.jsAPIPrefix,
		closed:             make(chan struct{}),
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	opts = append(opts, c.handlers(log)...)
	opts = append(opts,
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(!cfg.FailFast),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(ReconnectBufSize),
		nats.IgnoreAuthErrorAbort(),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
	)
	if cfg.FailFast && cfg.ConnectTimeout > 0 {
		opts = append(opts, nats.Timeout(max(cfg.ConnectTimeout/time.Duration(len(set.servers)), minDialTimeout)))
	}
	servers := strings.Join(set.servers, ",")
	nc, err := nats.Connect(servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", redactServers(set.servers), err)
	}
	c.Conn = nc
	if nc.IsConnected() {
		c.Status.connected(nc, false)
	}
	stop := context.AfterFunc(ctx, nc.Close)
	c.wg.Go(func() {
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.closed:
				return
			case <-c.Status.kick:
				c.Status.runHooks()
			}
		}
	})
	return c, nil
}

// Close closes the connection and waits for the client's goroutine and
// for the connection's closed callback, so nothing is logged after Close
// returns (nats.go runs the callback on its own goroutine, and Close may
// come after the connect context ended). Do not call it from an
// OnReconnect hook.
func (c *Client) Close() {
	c.Conn.Close()
	c.wg.Wait()
	select {
	case <-c.closed:
	case <-time.After(closeWait):
	}
}

// closeWait bounds how long Close waits for the closed callback.
const closeWait = 5 * time.Second

// JetStream returns a JetStream handle on the connection, in the context's
// domain or API prefix if it named one.
func (c *Client) JetStream(opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	var js jetstream.JetStream
	var err error
	switch {
	case c.JetStreamDomain != "":
		js, err = jetstream.NewWithDomain(c.Conn, c.JetStreamDomain, opts...)
	case c.JetStreamAPIPrefix != "":
		js, err = jetstream.NewWithAPIPrefix(c.Conn, c.JetStreamAPIPrefix, opts...)
	default:
		js, err = jetstream.New(c.Conn, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	return js, nil
}

// handlers returns the connection callbacks: each logs and then updates
// Status, so whoever sees a change in Status (a test, the status document)
// finds its log line already written. They run on the nats.go callback
// goroutine and must not block.
func (c *Client) handlers(log *slog.Logger) []nats.Option {
	st := c.Status
	return []nats.Option{
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
			st.connected(nc, false)
			// A first connection made in the background (RetryOnFailedConnect)
			// went through the reconnect loop; hooks run for it. One made
			// inside nats.Connect happened before any hook could register.
			if nc.Stats().Reconnects > 0 {
				st.signalHooks()
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
			st.connected(nc, true)
			st.signalHooks()
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // ClosedHandler reports it
			}
			log.Warn("nats disconnected", "error", err)
			st.disconnected(err)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats connect attempt failed", "error", err)
			st.recordError(err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"error", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			if errors.Is(err, nats.ErrPermissionViolation) {
				log.Error("nats permission denied", attrs...)
			} else {
				log.Warn("nats async error", attrs...)
			}
			st.recordError(err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info("nats connection closed")
			st.closed(nc.LastError())
			close(c.closed)
		}),
	}
}

// reconnectDelay is the wait before the attempt-th pass over the server
// list (nats.go counts from 1): exponential from reconnectMin, capped at
// reconnectMax, with jitter (half the delay fixed, half random) so a fleet
// does not reconnect in step.
func reconnectDelay(attempt int) time.Duration {
	return backoff.Policy{First: reconnectMin, Max: reconnectMax}.Jittered(attempt)
}

// redactServers shows a server list for an error message without secrets.
func redactServers(servers []string) string {
	shown := make([]string, len(servers))
	for i, s := range servers {
		shown[i] = redactURL(s)
	}
	return strings.Join(shown, ",")
}
