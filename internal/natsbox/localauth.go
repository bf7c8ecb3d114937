package natsbox

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/mms-io/mms/internal/atomicfile"
)

// The files of a [LocalAuth] in an agent's state directory.
const (
	// LocalSeedFile holds the nkey seed of the embedded server's one user
	// (0600).
	LocalSeedFile = "nats-user.nk"
	// LocalCertFile is the embedded server's self-signed TLS certificate:
	// the only CA its clients trust.
	LocalCertFile = "nats-server.pem"
	// LocalKeyFile is that certificate's private key (0600).
	LocalKeyFile = "nats-server-key.pem"
)

// Bounds of the local server certificate: valid for localCertLife, made
// anew when less than localCertRenew of it is left.
const (
	localCertLife  = 10 * 365 * 24 * time.Hour
	localCertRenew = 30 * 24 * time.Hour
)

// LocalAuth is how the clients on an agent's machine log in to its embedded
// server, and how they know it is that server before they send anything:
//
//   - one nkey user: the server sends a random nonce and the client signs
//     it, so the seed never leaves the machine and nothing a client sends
//     can be replayed (a password could be: a local user listening on the
//     port while the agent is down would learn it);
//   - the server's own TLS certificate, self-signed by a key only the
//     agent can read, which clients pin as their only CA: a client
//     connects with TLS and refuses a server that cannot prove it holds
//     that key, before it sends its credentials.
//
// Both are made once and kept in the state directory (the seed and the key
// 0600), so clients keep working across restarts of the agent.
type LocalAuth struct {
	// SeedFile, CertFile and KeyFile are the paths of the files.
	SeedFile, CertFile, KeyFile string
	// PublicKey is the user's public nkey (the server's only user).
	PublicKey string
	// cert is the server's certificate and key.
	cert tls.Certificate
}

// LoadLocalAuth returns the LocalAuth kept in dir, making what is missing:
// a new seed when there is none, a new certificate when there is none, it
// does not cover every one of hosts (names or IP addresses clients dial),
// or it expires within 30 days. dir must exist.
func LoadLocalAuth(dir string, hosts []string, now time.Time) (*LocalAuth, error) {
	a := &LocalAuth{
		SeedFile: filepath.Join(dir, LocalSeedFile),
		CertFile: filepath.Join(dir, LocalCertFile),
		KeyFile:  filepath.Join(dir, LocalKeyFile),
	}
	var err error
	if a.PublicKey, err = loadOrCreateSeed(a.SeedFile); err != nil {
		return nil, err
	}
	// A missing, damaged, expiring or too narrow certificate is replaced
	// (clients read the new one from the same file).
	if cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err == nil && certCovers(cert, hosts, now) {
		a.cert = cert
		return a, nil
	}
	if a.cert, err = createCert(a.CertFile, a.KeyFile, hosts, now); err != nil {
		return nil, err
	}
	return a, nil
}

// ServerTLS is the TLS configuration of the embedded server: its
// certificate, TLS 1.2 at least, no client certificates.
func (a *LocalAuth) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{a.cert}, MinVersion: tls.VersionTLS12}
}

// Configure sets opts to require TLS with the local certificate and to let
// in only the local nkey user (with every permission).
func (a *LocalAuth) Configure(opts *server.Options) {
	opts.TLSConfig = a.ServerTLS()
	opts.TLS = true
	opts.TLSTimeout = 2 // seconds, the server's default for a handshake
	opts.Nkeys = []*server.NkeyUser{{Nkey: a.PublicKey}}
	opts.Users = nil
}

// Context is the `nats` CLI context that logs in with a: the seed and the
// pinned certificate, by path.
func (a *LocalAuth) Context(description, url string) CLIContext {
	return CLIContext{Description: description, URL: url, NKey: a.SeedFile, CA: a.CertFile}
}

// loadOrCreateSeed returns the public key of the user seed in path,
// creating it (0600) when the file does not exist.
func loadOrCreateSeed(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", fmt.Errorf("create the local nkey user: %w", err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return "", fmt.Errorf("create the local nkey user: %w", err)
		}
		if err := atomicfile.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return "", fmt.Errorf("write the local nkey seed: %w", err)
		}
		return kp.PublicKey()
	}
	if err != nil {
		return "", fmt.Errorf("read the local nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		return "", fmt.Errorf("local nkey seed %s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("local nkey seed %s: not a user seed", path)
	}
	return pub, nil
}

// certCovers reports whether cert is valid until well after now for every
// one of hosts.
func certCovers(cert tls.Certificate, hosts []string, now time.Time) bool {
	if len(cert.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || now.Before(leaf.NotBefore) || now.Add(localCertRenew).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// createCert makes a self-signed ECDSA P-256 certificate for hosts and
// writes it and its key (0600).
func createCert(certFile, keyFile string, hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create the local server certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create the local server certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mms agent embedded NATS server"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(localCertLife),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create the local server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create the local server certificate: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a certificate on disk always has its key there.
	if err := atomicfile.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("write the local server key: %w", err)
	}
	if err := atomicfile.WriteFile(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("write the local server certificate: %w", err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// LocalHosts are the names and addresses clients on this machine (and, for
// a server listening on every address, on others) use to reach a server
// listening on host: localhost and the loopback addresses always, host
// itself when it is a specific address, and for an unspecified one (0.0.0.0,
// ::) the machine's host name and every address of its interfaces.
func LocalHosts(host string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	add := func(h string) {
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		add(host)
		return hosts
	}
	if name, err := os.Hostname(); err == nil {
		add(name)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				add(n.IP.String())
			}
		}
	}
	return hosts
}

// IsImpostor reports whether err, from Connect, means that the server did
// not prove the TLS identity the client pins: it offered no TLS, or a
// certificate the client's CA did not sign or not for the name dialed. The
// client sent it nothing but a TLS hello.
func IsImpostor(err error) bool {
	var (
		unknownCA *x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
	)
	return errors.Is(err, nats.ErrSecureConnWanted) || errors.As(err, &unknownCA) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &verify) || errors.As(err, &record)
}
