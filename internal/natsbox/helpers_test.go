package natsbox

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startServer starts a natsbox server for the test (random port and a
// t.TempDir store unless cfg says otherwise) and waits for its shutdown before
// the test's temporary directories are removed.
func startServer(t *testing.T, cfg ServerConfig) *server.Server {
	t.Helper()
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	s, err := StartServer(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartServer() = %v", err)
	}
	t.Cleanup(s.WaitForShutdown)
	return s
}

// restartable starts a server on a loopback port with a store of its own
// (in-process connections do not reconnect) and returns its client URL, a
// stop that shuts it down and waits, and a start that starts it again on
// the same port and store.
func restartable(t *testing.T) (url string, stop, start func()) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	s, err := StartServer(ctx, ServerConfig{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatalf("StartServer() = %v", err)
	}
	t.Cleanup(s.WaitForShutdown)
	p := port(s)
	stop = func() {
		cancel()
		s.WaitForShutdown()
	}
	start = func() { startServer(t, ServerConfig{Port: p, StoreDir: dir}) }
	return s.ClientURL(), stop, start
}

// connect connects with cfg and closes the client when the test ends.
func connect(t *testing.T, cfg ConnectConfig) *Client {
	t.Helper()
	c, err := Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// port returns the client port s listens on.
func port(s *server.Server) int {
	return s.Addr().(*net.TCPAddr).Port
}

// writeContext writes a `nats` CLI context file called name under a fresh
// XDG_CONFIG_HOME and returns its path.
func writeContext(t *testing.T, name string, fields map[string]any) string {
	t.Helper()
	base := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", base)
	dir := filepath.Join(base, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pki holds test certificates written as PEM files.
type pki struct {
	caFile, clientCert, clientKey string
	server                        tls.Certificate
	pool                          *x509.CertPool
}

// newPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all ECDSA P-256, and writes the client side to files.
func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "natsbox test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := leaf(2, "server", x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := leaf(3, "node1", x509.ExtKeyUsageClientAuth)

	p := pki{
		caFile:     writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER),
		clientCert: writePEM(t, dir, "client.pem", "CERTIFICATE", cliDER),
		clientKey:  writePEM(t, dir, "client-key.pem", "PRIVATE KEY", marshalKey(t, cliKey)),
		server:     tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		pool:       x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	return p
}

// serverTLS returns a server TLS config that requires a client certificate
// signed by the test CA.
func (p pki) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
