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

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodemetrics"
)

// serveMetrics serves the agent's metrics and /healthz on addr until the
// returned stop is called. A listen error is returned at once, so a bad
// --metrics-listen stops the agent at start.
func serveMetrics(addr string, m *nodemetrics.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
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
