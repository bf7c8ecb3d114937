package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
)

// Limits of what the embedded server stores: JetStream as a whole, and each
// stream and bucket the agent creates (archives uploaded with 'mms archive
// create --upload' and governors share the rest of the store).
const (
	embeddedMaxStore  = 1 << 30
	embeddedMaxMemory = 64 << 20
	eventsMaxAge      = 24 * time.Hour
	eventsMaxBytes    = 256 << 20
	specMaxBytes      = 16 << 20
	statusMaxBytes    = 64 << 20
)

// startEmbedded starts the agent's own NATS server, which lets in only user
// with password, and returns it with the URL the agent connects to. The
// caller shuts it down (it is not tied to ctx, so the agent's last status
// write can still reach it).
func startEmbedded(ctx context.Context, cfg agentConfig, user, password string, log *slog.Logger) (*server.Server, string, error) {
	// The server keeps only a bcrypt hash. The password is 256 random bits,
	// so the lowest cost is enough, and keeps each login cheap.
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return nil, "", fmt.Errorf("start the embedded nats server: hash its password: %w", err)
	}
	srv, err := natsbox.StartServer(context.WithoutCancel(ctx), natsbox.ServerConfig{
		Host:      cfg.listenHost,
		Port:      cfg.listenPort,
		StoreDir:  cfg.storeDir(),
		Users:     []*server.User{{Username: user, Password: string(hash)}},
		MaxStore:  embeddedMaxStore,
		MaxMemory: embeddedMaxMemory,
		Log:       log,
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
		History:      5, // more than 1: mms rollout undo reads the earlier specs
		MaxValueSize: packer.MaxEnvelopeSize,
		MaxBytes:     specMaxBytes,
	}
	statusBucket := nodestatus.BucketConfig()
	statusBucket.MaxBytes = statusMaxBytes
	for _, kv := range []jetstream.KeyValueConfig{specBucket, statusBucket} {
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
			log.Info("created kv bucket", "bucket", cfg.Bucket, "history", cfg.History, "max_value_size", cfg.MaxValueSize, "max_bytes", cfg.MaxBytes)
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

// localUser is the user name of the embedded server's one user.
const localUser = "mms"

// minPasswordLen is the shortest password of an earlier start that is
// reused: what newPassword makes.
const minPasswordLen = 43

// localCredentials returns the user and password the embedded server lets
// in: those in the local context file path from an earlier start (so
// followers such as 'mms events' reconnect after a restart), else new
// random ones.
func localCredentials(path string, log *slog.Logger) (user, password string) {
	c, err := natsbox.LoadContextFile(path)
	switch {
	case err == nil && c.User == localUser && len(c.Password) >= minPasswordLen:
		return c.User, c.Password
	case err != nil && !errors.Is(err, natsbox.ErrContextNotFound):
		log.Warn("the embedded server's credentials file is unreadable: making new credentials", "file", path, "error", err)
	}
	return localUser, newPassword()
}

// newPassword returns 256 random bits as base64url text.
func newPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// natsContextName is the nats CLI context the agent of the default state
// directory writes for its embedded server.
const natsContextName = "mms"

// natsContextMarker starts the description of every context file the agent
// writes, so that it never overwrites a context somebody else made.
const natsContextMarker = "written by mms agent: "

// localContextDescription is the description of the context files written
// for the embedded server of the agent with stateDir.
func localContextDescription(stateDir string) string {
	return natsContextMarker + "the embedded NATS server of the agent with state " + stateDir
}

// writeNATSContext writes the nats CLI context "mms" (0600, in the nats
// CLI's context directory) for the embedded server at url, so that
// 'nats --context mms …' works, and returns its name. It does so only for
// the agent of the default state directory (another agent's would replace
// it), never over a context it did not write, and returns "" when it did
// not write one; failing to write it is logged, not fatal.
func writeNATSContext(stateDir, url, user, password string, log *slog.Logger) string {
	if !isDefaultStateDir(stateDir) {
		return ""
	}
	path, err := natsbox.ContextPath(natsContextName)
	if err != nil {
		log.Warn("no nats CLI context written", "error", err)
		return ""
	}
	if old, err := natsbox.LoadContextFile(path); err == nil && !strings.HasPrefix(old.Description, natsContextMarker) {
		log.Warn("not replacing nats CLI context "+natsContextName+": it was not written by mms agent", "file", path)
		return ""
	}
	c := natsbox.CLIContext{Description: localContextDescription(stateDir), URL: url, User: user, Password: password}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Warn("no nats CLI context written", "error", err)
		return ""
	}
	if err := natsbox.WriteContextFile(path, c); err != nil {
		log.Warn("no nats CLI context written", "error", err)
		return ""
	}
	return natsContextName
}

// isDefaultStateDir reports whether dir is the default state directory.
func isDefaultStateDir(dir string) bool {
	def, err := agentStateDir("")
	return err == nil && def == dir
}

// requireAuthentication waits (at most timeout) for client to connect and
// refuses a server that lets anyone in: with --insecure-unsigned, whoever
// can write the spec runs any command on this node, so at least writing it
// must take credentials.
func requireAuthentication(ctx context.Context, client *natsbox.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !client.Conn.IsConnected() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("--insecure-unsigned: NATS did not answer within --timeout %v, so the agent cannot check that it requires authentication (without signatures, anyone who can write the spec runs any command on this node): start NATS first, or sign specs and give --public-key", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !client.Conn.AuthRequired() {
		return fmt.Errorf("--insecure-unsigned: the NATS server at %s does not require authentication, so anyone who can reach it could write the spec and run any command on this node: use a server that requires credentials (--creds, --nkey or --context), or sign specs and give --public-key", client.Conn.ConnectedUrlRedacted())
	}
	return nil
}
