package natsbox

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/natstest"
)

// TestLocalAuth starts a server configured by a LocalAuth and connects
// through its context: the seed and the certificate are made once and
// kept; a client that pins the certificate logs in, one that trusts
// nothing else refuses a server with another certificate (IsImpostor).
func TestLocalAuth(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	a, err := LoadLocalAuth(dir, LocalHosts("127.0.0.1"), now)
	if err != nil {
		t.Fatal(err)
	}
	for file, mode := range map[string]os.FileMode{LocalSeedFile: 0o600, LocalKeyFile: 0o600, LocalCertFile: 0o644} {
		if st, err := os.Stat(filepath.Join(dir, file)); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want mode %v", file, st, err, mode)
		}
	}
	cert := readTestFile(t, a.CertFile)

	again, err := LoadLocalAuth(dir, LocalHosts("127.0.0.1"), now.Add(time.Hour))
	if err != nil || again.PublicKey != a.PublicKey || readTestFile(t, again.CertFile) != cert {
		t.Fatalf("a second load = %+v, %v; want the same user and certificate", again, err)
	}
	if wider, err := LoadLocalAuth(dir, []string{"127.0.0.1", "192.0.2.7"}, now); err != nil || wider.PublicKey != a.PublicKey || readTestFile(t, wider.CertFile) == cert {
		t.Fatalf("a load for another address = %+v, %v; want the same user and a new certificate", wider, err)
	}
	wide := readTestFile(t, a.CertFile)
	if later, err := LoadLocalAuth(dir, []string{"127.0.0.1", "192.0.2.7"}, now.Add(localCertLife-localCertRenew+time.Hour)); err != nil || readTestFile(t, later.CertFile) == wide {
		t.Fatalf("a load a month before the certificate expires = %v; want a new certificate", err)
	}
	a, err = LoadLocalAuth(dir, LocalHosts("127.0.0.1"), now)
	if err != nil {
		t.Fatal(err)
	}

	opts := natstest.Options(t.TempDir())
	a.Configure(opts)
	srv := natstest.Run(t, opts)
	ctxFile := filepath.Join(t.TempDir(), "ctx.json")
	if err := WriteContextFile(ctxFile, a.Context("test", srv.ClientURL())); err != nil {
		t.Fatal(err)
	}
	c, err := Connect(t.Context(), ConnectConfig{ContextFile: ctxFile, FailFast: true})
	if err != nil {
		t.Fatalf("connect through the local context: %v", err)
	}
	c.Close()

	// Another server on the address (its own certificate): refused.
	other, err := LoadLocalAuth(t.TempDir(), LocalHosts("127.0.0.1"), now)
	if err != nil {
		t.Fatal(err)
	}
	impostor := natstest.Options(t.TempDir())
	other.Configure(impostor)
	isrv := natstest.Run(t, impostor)
	if err := WriteContextFile(ctxFile, a.Context("test", isrv.ClientURL())); err != nil {
		t.Fatal(err)
	}
	_, err = Connect(t.Context(), ConnectConfig{ContextFile: ctxFile, FailFast: true})
	if err == nil || !IsImpostor(err) {
		t.Fatalf("connect to a server with another certificate = %v, want an impostor", err)
	}
	if IsImpostor(errors.New("nats: Authorization Violation")) || IsImpostor(nats.ErrTimeout) {
		t.Error("IsImpostor is true for errors that say nothing about the server's identity")
	}
	if !IsImpostor(nats.ErrSecureConnWanted) || !IsImpostor(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}) {
		t.Error("IsImpostor is false for a server without TLS")
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServeLimited: clients reach a server without a listener of its own
// through ServeLimited, with TLS and the nkey login; connections beyond
// the limit wait until one closes.
func TestServeLimited(t *testing.T) {
	a, err := LoadLocalAuth(t.TempDir(), LocalHosts("127.0.0.1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opts := natstest.Options(t.TempDir())
	a.Configure(opts)
	opts.DontListen = true
	srv := natstest.Run(t, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := ServeLimited(srv, ln, 1, nil)
	defer stop()
	url := "nats://" + ln.Addr().String()
	ctxFile := filepath.Join(t.TempDir(), "ctx.json")
	if err := WriteContextFile(ctxFile, a.Context("test", url)); err != nil {
		t.Fatal(err)
	}
	first, err := Connect(t.Context(), ConnectConfig{ContextFile: ctxFile, FailFast: true})
	if err != nil {
		t.Fatalf("connect through ServeLimited: %v", err)
	}
	if _, err := first.Conn.TLSConnectionState(); err != nil {
		t.Errorf("the connection is not TLS: %v", err)
	}
	// The only slot is taken: a second client waits for it.
	second := make(chan error, 1)
	go func() {
		c, err := Connect(t.Context(), ConnectConfig{ContextFile: ctxFile, FailFast: true, ConnectTimeout: 30 * time.Second})
		if err == nil {
			c.Close()
		}
		second <- err
	}()
	first.Close()
	if err := <-second; err != nil {
		t.Errorf("the second client, once the first closed: %v", err)
	}
}
