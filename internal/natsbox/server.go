// Package natsbox runs the NATS pieces of an mms node: an embedded JetStream
// server (StartServer) for single-node setups, edge hubs and tests, and the
// client connection every agent and command uses (Connect), which reconnects
// forever, reads official `nats` CLI contexts and records its health in a
// Status for the agent's status document.
package natsbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrServerStart is returned (wrapped, with the server's own message) when the
// embedded server fails to start, for example because its port is in use.
var ErrServerStart = errors.New("nats server did not start")

// Defaults of ServerConfig.
const (
	DefaultHost         = "127.0.0.1"
	DefaultPort         = 4222
	DefaultStartTimeout = 10 * time.Second
)

// ServerConfig configures the embedded server. The zero value of every field
// but StoreDir is usable.
type ServerConfig struct {
	// Host is the client listen address; default DefaultHost (loopback only).
	Host string
	// Port is the client port; 0 means DefaultPort and -1 a random free port
	// (read it back with (*server.Server).ClientURL).
	Port int
	// StoreDir is the JetStream store directory, normally under the agent's
	// state directory. Required.
	StoreDir string
	// MaxConsumers is the default cap on consumers per stream. 0 means -1,
	// unlimited: every watching agent is one consumer, and the server's own
	// default of 1,000 is too low for a fleet. Streams may set their own cap.
	MaxConsumers int
	// MaxPayload is the largest message in bytes; 0 keeps the server default
	// (1 MiB). It also caps KV values.
	MaxPayload int32
	// Users, when not empty, are the only clients the server accepts, each
	// with its user name and password and full permissions; empty lets in
	// anyone who can reach the address.
	Users []*server.User
	// MaxStore and MaxMemory cap JetStream's file and memory storage in
	// bytes; 0 keeps the server's defaults (a share of the free disk and
	// of the memory).
	MaxStore, MaxMemory int64
	// StartTimeout bounds the wait for the server to accept connections;
	// default DefaultStartTimeout.
	StartTimeout time.Duration
	// Log receives the server's log; nil discards it.
	Log *slog.Logger
	// Configure, when set, may change the server options last, after the
	// fields above are applied: authorization, TLS, clustering.
	Configure func(opts *server.Options)
}

// Options returns the nats-server options cfg describes: JetStream on, no
// signal handlers (the agent owns signals), loopback unless Host says
// otherwise, Configure applied last.
func (cfg ServerConfig) Options() (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("nats server config: store dir is required")
	}
	if cfg.MaxConsumers < -1 {
		return nil, fmt.Errorf("nats server config: max consumers %d: want -1 (unlimited) or more", cfg.MaxConsumers)
	}
	if cfg.MaxPayload < 0 {
		return nil, fmt.Errorf("nats server config: max payload %d: want 0 (default) or more", cfg.MaxPayload)
	}
	if cfg.MaxStore < 0 || cfg.MaxMemory < 0 {
		return nil, fmt.Errorf("nats server config: max store %d, max memory %d: want 0 (default) or more", cfg.MaxStore, cfg.MaxMemory)
	}
	for i, u := range cfg.Users {
		if u == nil || u.Username == "" || u.Password == "" {
			return nil, fmt.Errorf("nats server config: user %d: want a user name and a password", i+1)
		}
	}
	opts := &server.Options{
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		Users:      cfg.Users,

		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: cfg.MaxMemory,
	}
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	opts.JetStreamLimits.DefaultMaxConsumers = cfg.MaxConsumers
	if cfg.MaxConsumers == 0 {
		opts.JetStreamLimits.DefaultMaxConsumers = -1
	}
	if cfg.Configure != nil {
		cfg.Configure(opts)
	}
	return opts, nil
}

// StartServer starts an embedded JetStream server and returns once it accepts
// client connections. It fails with ErrServerStart and the server's own reason
// (such as the address in use) when the server gives up, and after
// cfg.StartTimeout when it is still not ready.
//
// The server shuts down when ctx is done. To wait until it has finished (its
// store flushed and closed), call WaitForShutdown on the returned server;
// calling Shutdown directly works too.
func StartServer(ctx context.Context, cfg ServerConfig) (*server.Server, error) {
	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure nats server on %s: %w", addr, err)
	}
	slogger := newServerLogger(log)
	s.SetLoggerV2(slogger,
		log.Enabled(ctx, slog.LevelDebug),
		log.Enabled(ctx, LevelTrace),
		false)
	s.Start()

	if err := waitReady(ctx, s, slogger, cfg.StartTimeout); err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("start nats server on %s: %w", addr, err)
	}
	// No goroutine: the shutdown runs when ctx is done; Shutdown on a server
	// already stopped some other way does nothing.
	context.AfterFunc(ctx, s.Shutdown)
	log.Debug("nats server ready", "url", s.ClientURL(), "store", opts.StoreDir)
	return s, nil
}

// waitReady polls s until it accepts connections, reports a fatal error, ctx
// ends or timeout passes.
func waitReady(ctx context.Context, s *server.Server, l *serverLogger, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case msg := <-l.fatal:
			return fmt.Errorf("%w: %s", ErrServerStart, msg)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrServerStart, context.Cause(ctx))
		default:
		}
		// 50ms: ReadyForConnections polls every 25ms only when given more.
		if s.ReadyForConnections(50 * time.Millisecond) {
			return nil
		}
		if time.Now().After(deadline) {
			if last := l.lastError(); last != "" {
				return fmt.Errorf("%w: not ready after %v: %s", ErrServerStart, timeout, last)
			}
			return fmt.Errorf("%w: not ready after %v", ErrServerStart, timeout)
		}
	}
}
