package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/web"
)

// webOptions are the flags of `mms web`.
type webOptions struct {
	nats        natsFlags
	listen      string
	allowRemote bool
	bucket      string
	key         string
	staleAfter  time.Duration
}

func (a *app) newWebCmd() *cobra.Command {
	var o webOptions
	cmd := &cobra.Command{
		Use:   "web",
		Short: "Serve the fleet page: nodes, rollouts, events and the live spec in a browser, live",
		Long: `Web serves a page that shows the fleet in a browser and follows it live:

  /                     every node: applied and seen spec, machines, message,
                        age and flags, counts by flag; filter and sort
  /nodes/IDENTITY       one node: entries, machines, trusted keys, its events
  /rollouts             every rollout: waves, nodes, where and why it halted
  /rollouts/MACHINE     one rollout
  /events               machine events as they happen, filtered, with replay
  /spec                 the live spec: serial, expiry, signers, entries

The page shows the values 'mms status', 'mms rollout status' and 'mms
events' print, computed by the same code, and changes as the status
documents and the spec change (a KV watch, pushed to the page). Its JSON is
at /api/view and /api/nodes/IDENTITY.

It is read-only and needs nothing but this binary and NATS: the page is
embedded (no CDN, no external font or script), under a strict Content
Security Policy. It listens on loopback (127.0.0.1:8080) and answers only
requests to a loopback name. To serve other machines, give --listen with
their interface and --allow-remote: anyone who reaches it then reads the
fleet's status without logging in.`,
		Example: `  mms web
  mms web --listen 127.0.0.1:9000 --server nats://nats1:4222
  mms web --listen 0.0.0.0:8080 --allow-remote --context ops
  ssh -L 8080:127.0.0.1:8080 ops-host mms web   # then open http://127.0.0.1:8080/ here`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.web(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	o.nats.registerClient(cmd, f)
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "serve the page on `ADDRESS` (host:port; port 0 picks a free one)")
	f.BoolVar(&o.allowRemote, "allow-remote", false, "allow a --listen address beyond loopback: anyone who reaches it reads the fleet's status, without authentication")
	f.StringVar(&o.bucket, "bucket", "MACHINES", "KV bucket holding the signed spec")
	f.StringVar(&o.key, "key", "machines", "key of the signed spec in --bucket")
	f.DurationVar(&o.staleAfter, "stale-after", 0, "call an agent stale after this long without an update (default: 3 of its heartbeats)")
	return cmd
}

// exposure says what a page served beyond loopback gives away.
const exposure = "anyone who can reach it reads, without logging in, every node's status (identities, versions, errors), " +
	"the rollouts, the live spec's entries (sources, checksums, matchers) and the machine events; the page changes nothing"

// web serves the page until ctx ends.
func (a *app) web(ctx context.Context, o webOptions) error {
	remote := !web.Loopback(o.listen)
	if remote && !o.allowRemote {
		return fmt.Errorf("--listen %s is not a loopback address: %s. Give --allow-remote to do that on purpose, or keep the default 127.0.0.1:8080 (and reach it over ssh -L)", o.listen, exposure)
	}
	nc, err := o.nats.connect(ctx, a, "mms web")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	srv := web.New(web.Config{
		Conn:        nc.Conn,
		JS:          js,
		Fleet:       fleet.Options{SpecBucket: o.bucket, SpecKey: o.key, StaleAfter: o.staleAfter},
		Timeout:     o.nats.timeout,
		OnReconnect: nc.Status.OnReconnect,
		AllowRemote: remote,
		Log:         a.log,
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// The live streams end with ctx: Shutdown need not wait for them.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	if remote {
		fmt.Fprintf(a.stderr, "mms web: WARNING: %s is beyond loopback: %s.\n", boundAddr(o.listen, ln.Addr()), exposure)
	}
	fmt.Fprintf(a.stdout, "mms web: the fleet page is at %s (read-only; reading %s and %s/%s on %s)\n", pageURL(ln.Addr()), nodestatus.Bucket, o.bucket, o.key, nc.ConnectedUrlRedacted())
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	cancel()
	stop, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelStop()
	_ = hs.Shutdown(stop)
	<-done
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the fleet page: %w", err)
	}
	return nil
}

// pageURL is the URL of the page on a listener's address: an address that
// binds every interface is reached at 127.0.0.1 from this machine.
func pageURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String() + "/"
	}
	host := tcp.IP
	if host.IsUnspecified() {
		host = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(host.String(), fmt.Sprint(tcp.Port)) + "/"
}

// boundAddr is the --listen address with the port the listener got
// ("0.0.0.0:0" → "0.0.0.0:41235").
func boundAddr(listen string, addr net.Addr) string {
	host, _, err := net.SplitHostPort(listen)
	tcp, ok := addr.(*net.TCPAddr)
	if err != nil || !ok {
		return addr.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
