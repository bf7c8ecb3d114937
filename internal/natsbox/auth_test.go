package natsbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

func TestConnectNKey(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := user.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "node1.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, ServerConfig{Configure: func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}})
	c := connect(t, ConnectConfig{Servers: []string{s.ClientURL()}, NKey: seedFile, FailFast: true})
	roundTrip(t, c)

	t.Run("other key", func(t *testing.T) {
		other, _ := nkeys.CreateUser()
		otherSeed, _ := other.Seed()
		otherFile := filepath.Join(t.TempDir(), "other.nk")
		if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Connect(t.Context(), ConnectConfig{Servers: []string{s.ClientURL()}, NKey: otherFile, FailFast: true})
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Errorf("Connect(unknown nkey) = %v, want an Authorization Violation", err)
		}
	})
	t.Run("not a seed", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.nk")
		if err := os.WriteFile(bad, []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Connect(t.Context(), ConnectConfig{Servers: []string{s.ClientURL()}, NKey: bad})
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("Connect(bad seed file) = %v, want an error naming %s", err, bad)
		}
	})
}

func TestConnectTLS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, ServerConfig{Configure: func(o *server.Options) {
		o.TLSConfig = p.serverTLS()
		o.TLSVerify = true
	}})
	c := connect(t, ConnectConfig{
		Servers: []string{s.ClientURL()}, TLSCA: p.caFile, TLSCert: p.clientCert, TLSKey: p.clientKey, FailFast: true,
	})
	roundTrip(t, c)
	if !c.Conn.TLSRequired() {
		t.Errorf("TLSRequired() = false, want true")
	}

	t.Run("context files", func(t *testing.T) {
		writeContext(t, "tls", map[string]any{"url": s.ClientURL(), "ca": p.caFile, "cert": p.clientCert, "key": p.clientKey})
		roundTrip(t, connect(t, ConnectConfig{Context: "tls", FailFast: true}))
	})
	t.Run("no CA fails fast", func(t *testing.T) {
		_, err := Connect(t.Context(), ConnectConfig{
			Servers: []string{s.ClientURL()}, TLSCert: p.clientCert, TLSKey: p.clientKey, FailFast: true,
		})
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("Connect(no CA) = %v, want \"certificate signed by unknown authority\"", err)
		}
	})
	t.Run("no CA while retrying shows in status", func(t *testing.T) {
		var logs syncbuf.Buffer
		c := connect(t, ConnectConfig{
			Servers: []string{s.ClientURL()}, TLSCert: p.clientCert, TLSKey: p.clientKey, Log: logs.Logger(slog.LevelInfo),
		})
		natstest.Eventually(t, 10*time.Second, func() error {
			if st := c.Status.Snapshot(); !strings.Contains(st.LastError, "certificate signed by unknown authority") {
				return fmt.Errorf("Snapshot().LastError = %q", st.LastError)
			}
			return nil
		})
		if st := c.Status.Snapshot(); st.Connected {
			t.Errorf("Snapshot().Connected = true without the CA")
		}
		// The callbacks log before they update Status (TestLogLineBeforeStatus):
		// once Status shows the failure, its log line is written.
		if !strings.Contains(logs.String(), "unknown authority") {
			t.Errorf("client log = %q, want the TLS failure", logs.String())
		}
	})
	t.Run("no client cert", func(t *testing.T) {
		_, err := Connect(t.Context(), ConnectConfig{Servers: []string{s.ClientURL()}, TLSCA: p.caFile, FailFast: true})
		if err == nil {
			t.Errorf("Connect(no client certificate) = nil, want an error")
		}
	})
}

func TestPermissionViolationIsVisible(t *testing.T) {
	s := startServer(t, ServerConfig{Configure: withUsers(
		&server.User{Username: "admin", Password: "a"},
		&server.User{Username: "node1", Password: "n", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Deny: []string{"$KV.MACHINES.>"}},
		}},
	)})
	writeContext(t, "admin", map[string]any{"url": s.ClientURL(), "user": "admin", "password": "a"})
	admin := connect(t, ConnectConfig{Context: "admin", FailFast: true})
	adminJS, _ := admin.JetStream()
	if _, err := adminJS.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES"}); err != nil {
		t.Fatalf("CreateKeyValue() = %v", err)
	}

	writeContext(t, "node", map[string]any{"url": s.ClientURL(), "user": "node1", "password": "n"})
	var logs syncbuf.Buffer
	node := connect(t, ConnectConfig{Context: "node", FailFast: true, Log: logs.Logger(slog.LevelInfo)})
	js, _ := node.JetStream()
	kv, err := js.KeyValue(t.Context(), "MACHINES")
	if err != nil {
		t.Fatalf("KeyValue(MACHINES) = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := kv.Put(ctx, "spec", []byte("evil")); err == nil {
		t.Fatalf("Put(spec) by node1 = nil error, want it denied")
	}

	const want = `Permissions Violation for Publish to "$KV.MACHINES.spec"`
	natstest.Eventually(t, 5*time.Second, func() error {
		st := node.Status.Snapshot()
		if len(st.PermissionViolations) != 1 || st.PermissionViolations[0].Message != want {
			return fmt.Errorf("Snapshot().PermissionViolations = %+v, want one %q", st.PermissionViolations, want)
		}
		return nil
	})
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, `Permissions Violation for Publish to \"$KV.MACHINES.spec\"`) {
		t.Errorf("client log = %q, want an ERROR naming the denied subject", out)
	}
}
