package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
)

// natsFlags are the connection flags shared by the commands that talk to
// NATS as a client (put, events, status, governor).
type natsFlags struct {
	server  string
	creds   string
	timeout time.Duration
}

func (n *natsFlags) register(f *pflag.FlagSet) {
	f.StringVar(&n.server, "server", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	f.StringVar(&n.creds, "creds", "", "NATS credentials file")
	f.DurationVar(&n.timeout, "timeout", 10*time.Second, "give up after this long")
}

// natsConn is a client connection that remembers asynchronous errors, so a
// permission violation (which otherwise looks like a timeout) can be named.
type natsConn struct {
	*nats.Conn
	mu       *sync.Mutex
	asyncErr *error
}

// explain appends the last asynchronous server error, if any, to err.
func (c natsConn) explain(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *c.asyncErr != nil {
		return fmt.Errorf("%w (server said: %v)", err, *c.asyncErr)
	}
	return err
}

func (n *natsFlags) connect(ctx context.Context, a *app, name string) (natsConn, error) {
	c := natsConn{mu: &sync.Mutex{}, asyncErr: new(error)}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(n.timeout),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			*c.asyncErr = err
			c.mu.Unlock()
			a.log.Warn("nats", "error", err)
		}),
	}
	if n.creds != "" {
		opts = append(opts, nats.UserCredentials(n.creds))
	}
	nc, err := nats.Connect(strings.Join(strings.Fields(strings.ReplaceAll(n.server, ",", " ")), ","), opts...)
	if err != nil {
		return c, fmt.Errorf("connect to %s: %w", n.server, err)
	}
	c.Conn = nc
	return c, nil
}
