package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"golang.org/x/net/netutil"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodemetrics"
)

// Bounds of the metrics server: scrapers are few and quick, so a client
// that holds connections open (idle keep-alives, slow requests) cannot
// take the agent's file descriptors.
const (
	// metricsMaxConns caps the connections served at once; more wait in
	// the kernel's backlog, not in the agent.
	metricsMaxConns = 32
	// metricsIdleTimeout closes a keep-alive connection idle this long.
	metricsIdleTimeout = 10 * time.Second
	// metricsReadTimeout and metricsWriteTimeout bound one request and
	// its response.
	metricsReadTimeout  = 10 * time.Second
	metricsWriteTimeout = 30 * time.Second
)

// serveMetrics serves the agent's metrics and /healthz on addr until the
// returned stop is called, at most metricsMaxConns connections at once,
// closing idle ones. A listen error is returned at once, so a bad
// --metrics-listen stops the agent at start; an address other machines can
// reach is served with a warning.
func serveMetrics(addr string, m *nodemetrics.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && !isLoopback(host) {
		log.Warn("the metrics server listens on "+host+": anyone who can reach it reads this node's machines, versions and states, and can hold its connections (at most "+fmt.Sprint(metricsMaxConns)+"); bind it to 127.0.0.1 or firewall it",
			"metrics_listen", addr)
	}
	ln = netutil.LimitListener(ln, metricsMaxConns)
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: metricsReadTimeout,
		WriteTimeout: metricsWriteTimeout, IdleTimeout: metricsIdleTimeout, MaxHeaderBytes: 16 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics", "healthz", "http://"+ln.Addr().String()+"/healthz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// managerMachine is the machine /healthz requires to run: the compiled-in
// manager when this binary has it.
func managerMachine() string {
	if slices.Contains(agent.RegisteredMachines(), manager.MachineName) {
		return manager.MachineName
	}
	return ""
}
