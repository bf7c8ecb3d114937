package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// Defaults of [FetchConfig].
const (
	// DefaultIdleTimeout is how long a download may go without receiving
	// a byte before it is abandoned as stalled.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultFetchTimeout is the overall deadline of one download attempt.
	// A declared size raises it to 30s plus 64 KiB/s for the whole size.
	DefaultFetchTimeout = 10 * time.Minute
	// DefaultRetries is how many times a failed download is retried.
	DefaultRetries = 3
	// DefaultBackoff is the delay before the first retry; it doubles with
	// every retry, up to maxBackoff, and is jittered.
	DefaultBackoff = time.Second
	// DefaultMinRate is the slowest average transfer rate a download may
	// keep, in bytes per second, once DefaultRateGrace has passed: a
	// server that drips a byte now and then (never idle long enough for
	// the idle timeout) is cut off within seconds, not after the whole
	// attempt's deadline.
	DefaultMinRate = 16 << 10
	// DefaultRateGrace is how long a response's body is read before its
	// average rate is held to the minimum: a slow start is not held
	// against it, and the wait for the response itself (a server busy
	// with a whole fleet) is bounded by the idle timeout instead.
	DefaultRateGrace = 10 * time.Second
	// DefaultArchiveDeadline bounds all the attempts at one archive
	// together (retries and the waits between them), unless the declared
	// size needs a longer single attempt.
	DefaultArchiveDeadline = 15 * time.Minute
	// MaxRedirects is how many HTTP redirects one download follows.
	MaxRedirects = 5
)

// maxBackoff caps the delay between two attempts.
const maxBackoff = 30 * time.Second

// minDownloadRate is the slowest transfer the default deadline allows for
// a declared size.
const minDownloadRate = 64 << 10 // bytes per second

// ErrDownloadStalled means a download received no byte for the idle
// timeout (a slow-retrieval attack or a broken network path).
var ErrDownloadStalled = errors.New("download stalled")

// FetchConfig configures a [Fetcher]. The zero value fetches https:// and
// (without Conn) nothing else, with the defaults above.
type FetchConfig struct {
	// AllowHTTP allows plain http:// sources. Credentials are never sent
	// over plain http, and a redirect from https to http is always refused.
	AllowHTTP bool
	// CredentialsDir holds the node-local credentials named by v2 entries'
	// auth (S/credentials); see [Credential] for the file format.
	CredentialsDir string
	// Conn serves nats://BUCKET/OBJECT sources from a JetStream object
	// store; nil makes such sources fail clearly.
	Conn *nats.Conn
	// Client makes HTTP requests; nil means a client with dial, TLS and
	// header timeouts. The Fetcher follows redirects itself, so Client's
	// CheckRedirect is never used.
	Client *http.Client
	// MaxSize caps the archive's bytes; 0 means
	// packer.DefaultLimits().MaxArchiveSize.
	MaxSize int64
	// IdleTimeout abandons a download that receives no byte for this long;
	// 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Timeout is the overall deadline of one attempt; 0 means
	// DefaultFetchTimeout, raised for large declared sizes.
	Timeout time.Duration
	// Retries is how many times a download that failed with a network
	// error, a stall or an HTTP 5xx is retried (never after a 4xx, a size
	// or checksum error); 0 means DefaultRetries, negative means none.
	Retries int
	// Backoff is the delay before the first retry; 0 means DefaultBackoff.
	Backoff time.Duration
	// MinRate is the slowest average rate, in bytes per second, an
	// attempt may keep after RateGrace; slower is a transient failure.
	// 0 means DefaultMinRate, negative means no minimum.
	MinRate int64
	// RateGrace is how long the body of a response is read before
	// MinRate applies (the wait for the response is IdleTimeout's); 0
	// means DefaultRateGrace.
	RateGrace time.Duration
	// Deadline bounds Open and Fetch as a whole: every attempt and every
	// wait between them. 0 means DefaultArchiveDeadline, or the attempt
	// timeout when that is longer (a large declared size).
	Deadline time.Duration
	// Progress, when set, is told how a download goes (see
	// [ProgressReporter]): first ProgressDelay after the response arrived
	// (not while the request waits for it), then at most every
	// ProgressInterval, and once more at its end.
	Progress ProgressReporter
	// ProgressDelay and ProgressInterval pace Progress; 0 means
	// DefaultProgressDelay and DefaultProgressInterval.
	ProgressDelay, ProgressInterval time.Duration
	// Log receives retry warnings; nil discards them. Credentials and URL
	// user info are never logged.
	Log *slog.Logger
}

// Fetcher downloads machine archives from spec entries' sources. It is safe
// for concurrent use.
type Fetcher struct {
	cfg    FetchConfig
	client *http.Client
	log    *slog.Logger
	js     jetstream.JetStream // on cfg.Conn; nil without one

	mu      sync.Mutex
	buckets map[string]objectBucket // object store buckets opened on cfg.Conn, by name; guarded by mu
	replies *replyMux               // answers to direct gets, subscribed on first use; guarded by mu
}

// NewFetcher returns a Fetcher for cfg.
func NewFetcher(cfg FetchConfig) (*Fetcher, error) {
	if cfg.MaxSize < 0 || cfg.IdleTimeout < 0 || cfg.Timeout < 0 || cfg.Backoff < 0 || cfg.RateGrace < 0 || cfg.Deadline < 0 ||
		cfg.ProgressDelay < 0 || cfg.ProgressInterval < 0 {
		return nil, errors.New("new fetcher: MaxSize, IdleTimeout, Timeout, Backoff, RateGrace, Deadline and the progress pacing must not be negative")
	}
	if cfg.MinRate == 0 {
		cfg.MinRate = DefaultMinRate
	}
	if cfg.RateGrace == 0 {
		cfg.RateGrace = DefaultRateGrace
	}
	if cfg.ProgressDelay == 0 {
		cfg.ProgressDelay = DefaultProgressDelay
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = packer.DefaultLimits().MaxArchiveSize
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var client http.Client
	if cfg.Client != nil {
		client = *cfg.Client
	} else {
		client.Transport = defaultTransport(cfg.IdleTimeout)
	}
	// Redirects are followed by hand, hop by hop, so that credentials only
	// ever go to the origin the entry names (see openHTTP).
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	f := &Fetcher{cfg: cfg, client: &client, log: log}
	if cfg.Conn != nil {
		js, err := jetstream.New(cfg.Conn)
		if err != nil {
			return nil, fmt.Errorf("new fetcher: open JetStream: %w", err)
		}
		f.js = js
	}
	return f, nil
}

// CloseIdleConnections closes the connections the Fetcher keeps open for
// reuse, and its subscription to direct get replies when no download
// waits on it. Its owner calls it when it stops, so a stopped machine leaves no
// connection (and no goroutines) behind. It is harmless at any time:
// running downloads finish, and later ones dial again.
func (f *Fetcher) CloseIdleConnections() {
	f.client.CloseIdleConnections()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replies != nil && f.replies.idle() {
		_ = f.replies.sub.Unsubscribe()
		f.replies = nil
	}
}

// defaultTransport is http.DefaultTransport's setup with a header timeout.
func defaultTransport(idle time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = idle
	return t
}

// Open returns the archive bytes of m as a stream: the HTTP status is
// checked, the size is capped by m.Size, the response's Content-Length and
// MaxSize, a stall or the attempt's deadline fails the read, and
// credentials are applied but never logged. Opening is retried; reading is
// not (use [Fetcher.Fetch] to retry the whole transfer). The caller closes
// the stream.
//
// The whole of Open, reading included, is bounded by the archive's deadline
// (FetchConfig.Deadline); the stream fails with that cause once it passes.
func (f *Fetcher) Open(ctx context.Context, m spec.Machine) (io.ReadCloser, error) {
	ctx, cancel := f.withDeadline(ctx, m)
	var rc io.ReadCloser
	err := f.retry(ctx, m, func() error {
		var err error
		rc, err = f.open(ctx, m)
		return err
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}, nil
}

// cancelOnClose releases the archive deadline of an opened stream.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}

// Fetch opens m's archive and calls consume with the stream, retrying the
// whole transfer (open and consume) while it fails for a transient reason
// (network error, stall, deadline, HTTP 5xx) and retries remain. consume
// must undo its own partial work before it returns an error.
//
// All attempts and the waits between them share the archive's deadline
// (FetchConfig.Deadline); once it passes nothing is retried.
func (f *Fetcher) Fetch(ctx context.Context, m spec.Machine, consume func(io.Reader) error) error {
	ctx, cancel := f.withDeadline(ctx, m)
	defer cancel()
	return f.retry(ctx, m, func() error {
		rc, err := f.open(ctx, m)
		if err != nil {
			return err
		}
		defer rc.Close()
		return consume(rc)
	})
}

// open makes one attempt at opening m's source.
func (f *Fetcher) open(ctx context.Context, m spec.Machine) (io.ReadCloser, error) {
	rc, err := f.openSource(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", redactSource(m.Source), err)
	}
	return rc, nil
}

func (f *Fetcher) openSource(ctx context.Context, m spec.Machine) (io.ReadCloser, error) {
	u, err := url.Parse(m.Source)
	if err != nil {
		// url.Error repeats the URL, which may hold credentials.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid source: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("invalid source: credentials in the URL are not allowed; name a node-local credential in auth")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !f.cfg.AllowHTTP {
			return nil, errors.New("plain http:// sources are not allowed on this node")
		}
	case "nats":
		return f.openObject(ctx, m)
	default:
		return nil, fmt.Errorf("unsupported source scheme %q: want https:// or nats://", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("invalid source: no host")
	}
	cred, err := f.credential(m)
	if err != nil {
		return nil, err
	}
	if cred != nil && u.Scheme != "https" {
		return nil, errors.New("refusing to send credentials over plain http://")
	}
	return f.openHTTP(ctx, m, u, cred)
}

// credential returns the credential m's download uses, or nil.
func (f *Fetcher) credential(m spec.Machine) (*Credential, error) {
	switch {
	case m.Auth != "" && (m.Username != "" || m.Password != ""):
		return nil, errors.New("entry has both auth and username/password")
	case m.Auth != "":
		return LoadCredential(f.cfg.CredentialsDir, m.Auth)
	case m.Username != "" || m.Password != "":
		return &Credential{typ: CredentialBasic, username: m.Username, password: m.Password}, nil
	}
	return nil, nil
}

// attemptTimeout is the overall deadline of one attempt at fetching m.
func (f *Fetcher) attemptTimeout(m spec.Machine) time.Duration {
	if f.cfg.Timeout > 0 {
		return f.cfg.Timeout
	}
	t := DefaultFetchTimeout
	if m.Size > 0 {
		if bySize := 30*time.Second + time.Duration(m.Size/minDownloadRate)*time.Second; bySize > t {
			t = bySize
		}
	}
	return t
}

// archiveDeadline is the total time all attempts at m may take.
func (f *Fetcher) archiveDeadline(m spec.Machine) time.Duration {
	if f.cfg.Deadline > 0 {
		return f.cfg.Deadline
	}
	return max(DefaultArchiveDeadline, f.attemptTimeout(m))
}

// withDeadline bounds ctx by m's archive deadline, with a cause that says
// so (and is not worth retrying).
func (f *Fetcher) withDeadline(ctx context.Context, m spec.Machine) (context.Context, context.CancelFunc) {
	d := f.archiveDeadline(m)
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: the download did not finish within its total deadline of %s (every attempt and retry included)", ErrDownloadDeadline, d))
}

// ErrDownloadDeadline means an archive's downloads, retries included, did
// not finish within the archive's total deadline.
var ErrDownloadDeadline = errors.New("download deadline passed")

// ErrDownloadTooSlow means a download's average rate fell below the
// minimum (FetchConfig.MinRate) after the grace period: a slow-drip
// server, or a link too slow for the archive.
var ErrDownloadTooSlow = errors.New("download too slow")

// redactSource returns src fit for logs and errors: no user info, query or
// fragment (pre-signed URLs carry tokens there).
func redactSource(src string) string {
	u, err := url.Parse(src)
	if err != nil {
		return "(unparsable source)"
	}
	return redactURL(u)
}

// redactURL renders u without user info, query or fragment.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := r.String()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}
