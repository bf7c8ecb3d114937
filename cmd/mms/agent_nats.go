package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/fleetstatus"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/packer"
)

// Limits of the events stream the embedded server keeps.
const (
	eventsMaxAge   = 24 * time.Hour
	eventsMaxBytes = 256 << 20
)

// startEmbedded starts the agent's own NATS server and returns it with the
// URL the agent connects to. The caller shuts it down (it is not tied to
// ctx, so the agent's last status write can still reach it).
func startEmbedded(ctx context.Context, cfg agentConfig, log *slog.Logger) (*server.Server, string, error) {
	srv, err := natsbox.StartServer(context.WithoutCancel(ctx), natsbox.ServerConfig{
		Host:     cfg.listenHost,
		Port:     cfg.listenPort,
		StoreDir: cfg.storeDir(),
		Log:      log,
	})
	if err != nil {
		return nil, "", fmt.Errorf("start the embedded nats server (give --listen another address, or --server to use an existing NATS): %w", err)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, "", fmt.Errorf("start the embedded nats server: unexpected listener address %v", srv.Addr())
	}
	return srv, "nats://" + net.JoinHostPort(connectHost(cfg.listenHost), strconv.Itoa(addr.Port)), nil
}

// connectHost is the address a client on this machine uses to reach a
// server listening on host: loopback for the unspecified addresses.
func connectHost(host string) string {
	ip := net.ParseIP(host)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return host
	case ip.To4() != nil:
		return "127.0.0.1"
	default:
		return "::1"
	}
}

// isLoopback reports whether host only listens on this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// provisionEmbedded creates what a single-node setup needs on the agent's
// own server: the spec bucket, the status bucket and the events stream.
// Existing ones are left as they are.
func provisionEmbedded(ctx context.Context, js jetstream.JetStream, bucket string, log *slog.Logger) error {
	specBucket := jetstream.KeyValueConfig{
		Bucket:       bucket,
		Description:  "mms signed desired state",
		History:      5,
		MaxValueSize: packer.MaxEnvelopeSize,
	}
	for _, kv := range []jetstream.KeyValueConfig{specBucket, fleetstatus.BucketConfig()} {
		if err := ensureBucket(ctx, js, kv, log); err != nil {
			return err
		}
	}
	events := jetstream.StreamConfig{
		Name:        agent.EventsStream,
		Description: "mms machine events (transitions and watcher states)",
		Subjects:    []string{agent.EventsSubjects},
		MaxAge:      eventsMaxAge,
		MaxBytes:    eventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
	}
	_, err := js.Stream(ctx, events.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, events)
		if err == nil {
			log.Info("created events stream", "stream", events.Name, "subjects", events.Subjects[0], "max_age", events.MaxAge, "max_bytes", events.MaxBytes)
		}
	}
	if err != nil {
		return fmt.Errorf("set up events stream %s: %w", events.Name, err)
	}
	return nil
}

// ensureBucket creates the bucket unless it exists.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, log *slog.Logger) error {
	_, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateKeyValue(ctx, cfg)
		if err == nil {
			log.Info("created kv bucket", "bucket", cfg.Bucket, "history", cfg.History, "max_value_size", cfg.MaxValueSize)
		}
	}
	if err != nil {
		return fmt.Errorf("set up kv bucket %s: %w", cfg.Bucket, err)
	}
	return nil
}

// showServers lists server URLs for a person, without credentials.
func showServers(servers []string) string {
	var shown []string
	for _, entry := range servers {
		for _, s := range strings.Split(entry, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if u, err := url.Parse(s); err == nil && u.User != nil {
				u.User = nil
				s = u.String()
			}
			shown = append(shown, s)
		}
	}
	return strings.Join(shown, ",")
}
