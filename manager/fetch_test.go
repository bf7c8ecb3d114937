package manager

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// fetchAll opens m with f and reads the whole stream.
func fetchAll(t *testing.T, f *Fetcher, m spec.Machine) ([]byte, error) {
	t.Helper()
	rc, err := f.Open(t.Context(), m)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func newTestFetcher(t *testing.T, cfg FetchConfig) (*Fetcher, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	f, err := NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f, logs
}

func TestFetcherOpen(t *testing.T) {
	payload := []byte("archive bytes")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(payload)
	zw.Close()
	gzipped := gz.Bytes()
	var flaky atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write(payload) })
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if flaky.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(payload)
	})
	mux.HandleFunc("/encoded", func(w http.ResponseWriter, r *http.Request) {
		// A server that labels a .tar.gz as gzip-encoded content.
		if r.Header.Get("Accept-Encoding") != "identity" {
			t.Errorf("request Accept-Encoding = %q, want identity", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gzipped)
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusGone) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		// One byte every 5ms: never idle, never done.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			w.Write([]byte{'x'})
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	secure := httptest.NewTLSServer(mux)
	t.Cleanup(secure.Close)
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	host := strings.TrimPrefix(secure.URL, "https://")
	closed := httptest.NewTLSServer(mux)
	closed.Close()
	closedHost := strings.TrimPrefix(closed.URL, "https://")

	tests := []struct {
		name    string
		cfg     FetchConfig
		m       spec.Machine
		want    []byte
		wantErr string
		wantIs  error
	}{
		{name: "https", m: spec.Machine{Name: "a", Source: secure.URL + "/ok"}, want: payload},
		{name: "Content-Encoding is not decoded", m: spec.Machine{Name: "a", Source: secure.URL + "/encoded"}, want: gzipped},
		{name: "declared size exact", m: spec.Machine{Name: "a", Source: secure.URL + "/ok", Size: int64(len(payload))}, want: payload},
		{name: "5xx retried until it works", cfg: FetchConfig{Retries: 3}, m: spec.Machine{Name: "a", Source: secure.URL + "/flaky"}, want: payload},
		{name: "4xx not retried", cfg: FetchConfig{Retries: 3}, m: spec.Machine{Name: "a", Source: secure.URL + "/gone"},
			wantErr: fmt.Sprintf("fetch %s/gone: HTTP 410 from %s", secure.URL, host)},
		{name: "http refused by default", m: spec.Machine{Name: "a", Source: plain.URL + "/ok"},
			wantErr: "plain http:// sources are not allowed on this node"},
		{name: "http when allowed", cfg: FetchConfig{AllowHTTP: true}, m: spec.Machine{Name: "a", Source: plain.URL + "/ok"}, want: payload},
		{name: "credentials never over http", cfg: FetchConfig{AllowHTTP: true},
			m:       spec.Machine{Name: "a", Source: plain.URL + "/ok", Username: "u", Password: "p"},
			wantErr: "refusing to send credentials over plain http://"},
		{name: "user info in the source", m: spec.Machine{Name: "a", Source: "https://u:pw@" + host + "/ok"},
			wantErr: "credentials in the URL are not allowed"},
		{name: "unsupported scheme", m: spec.Machine{Name: "a", Source: "ftp://" + host + "/ok"},
			wantErr: `unsupported source scheme "ftp"`},
		{name: "declared size over the node cap", cfg: FetchConfig{MaxSize: 10}, m: spec.Machine{Name: "a", Source: secure.URL + "/ok", Size: 11},
			wantErr: "declared size 11 exceeds this node's limit of 10 bytes", wantIs: packer.ErrArchiveTooLarge},
		{name: "Content-Length over the node cap", cfg: FetchConfig{MaxSize: 5}, m: spec.Machine{Name: "a", Source: secure.URL + "/ok"},
			wantErr: "archive exceeds size limit 5 (Content-Length is 13)", wantIs: packer.ErrArchiveTooLarge},
		{name: "no response headers", cfg: FetchConfig{IdleTimeout: 30 * time.Millisecond, Retries: -1},
			m:       spec.Machine{Name: "a", Source: secure.URL + "/hang"},
			wantErr: "download stalled: no data for 30ms", wantIs: ErrDownloadStalled},
		{name: "overall deadline", cfg: FetchConfig{Timeout: 100 * time.Millisecond, Retries: -1},
			m:       spec.Machine{Name: "a", Source: secure.URL + "/trickle"},
			wantErr: "download did not finish within 100ms"},
		{name: "connection refused is retried", cfg: FetchConfig{Retries: 1}, m: spec.Machine{Name: "a", Source: closed.URL + "/ok"},
			wantErr: "GET from " + closedHost + ": dial tcp " + closedHost + ": connect: connection refused (gave up after 2 attempts)"},
		{name: "object store without a connection", m: spec.Machine{Name: "a", Source: "nats://ARCHIVES/a.tgz"},
			wantErr: "nats:// sources need a NATS connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Client = secure.Client()
			f, _ := newTestFetcher(t, tt.cfg)
			got, err := fetchAll(t, f, tt.m)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fetch %s = %q, %v, want error %q", tt.m.Source, got, err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("fetch %s = %v, want errors.Is %v", tt.m.Source, err, tt.wantIs)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("fetch %s = %q, %v, want %q", tt.m.Source, got, err, tt.want)
			}
		})
	}
}

func TestFetcherRedirects(t *testing.T) {
	payload := []byte("archive")
	type seen struct {
		mu   sync.Mutex
		auth []string
	}
	record := func(s *seen, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.auth = append(s.auth, r.Header.Get("Authorization")+"|"+r.Header.Get("X-Api-Key"))
	}
	var originSeen, otherSeen seen
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(&otherSeen, r)
		w.Write(payload)
	}))
	t.Cleanup(other.Close)
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(&originSeen, r)
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/final", http.StatusMovedPermanently)
		case "/cross":
			http.Redirect(w, r, other.URL+"/final", http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/userinfo":
			http.Redirect(w, r, "https://x:y@"+strings.TrimPrefix(other.URL, "https://")+"/final", http.StatusFound)
		case "/ftp":
			http.Redirect(w, r, "ftp://example.com/x", http.StatusFound)
		case "/final":
			w.Write(payload)
		}
	}))
	t.Cleanup(origin.Close)

	credDir := t.TempDir()
	writeCredential(t, credDir, "key", `{"type":"header","header":"X-Api-Key","token":"k-123"}`)
	tests := []struct {
		name       string
		path       string
		auth       string
		wantOrigin []string
		wantOther  []string
		wantErr    string
	}{
		{name: "same origin keeps basic auth", path: "/same", wantOrigin: []string{"Basic dTpzM2NyZXQ=|", "Basic dTpzM2NyZXQ=|"}},
		{name: "other host gets no basic auth", path: "/cross", wantOrigin: []string{"Basic dTpzM2NyZXQ=|"}, wantOther: []string{"|"}},
		{name: "other host gets no api key header", path: "/cross", auth: "key", wantOrigin: []string{"|k-123"}, wantOther: []string{"|"}},
		{name: "redirect loop", path: "/loop", wantErr: fmt.Sprintf("stopped after %d redirects", MaxRedirects)},
		{name: "redirect to user info", path: "/userinfo", wantErr: "refusing redirect to a URL with credentials"},
		{name: "redirect to another scheme", path: "/ftp", wantErr: `refusing redirect to scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			originSeen.auth, otherSeen.auth = nil, nil
			f, logs := newTestFetcher(t, FetchConfig{Client: origin.Client(), CredentialsDir: credDir})
			m := spec.Machine{Name: "a", Source: origin.URL + tt.path, Auth: tt.auth}
			if tt.auth == "" {
				m.Username, m.Password = "u", "s3cret"
			}
			got, err := fetchAll(t, f, m)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fetch %s = %v, want %q", tt.path, err, tt.wantErr)
				}
			} else if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("fetch %s = %q, %v", tt.path, got, err)
			}
			if tt.wantErr == "" {
				if !equalStrings(originSeen.auth, tt.wantOrigin) || !equalStrings(otherSeen.auth, tt.wantOther) {
					t.Errorf("credentials seen: origin %q, other %q; want %q, %q", originSeen.auth, otherSeen.auth, tt.wantOrigin, tt.wantOther)
				}
			}
			for _, secret := range []string{"s3cret", "dTpzM2NyZXQ=", "k-123", "x:y"} {
				if strings.Contains(logs.String(), secret) || (err != nil && strings.Contains(err.Error(), secret)) {
					t.Errorf("secret %q in logs or error:\n%s\n%v", secret, logs, err)
				}
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || strings.Join(a, "\x00") == strings.Join(b, "\x00"))
}

func TestNextHop(t *testing.T) {
	from := mustURL(t, "https://files.example/a/web.tgz?sig=1")
	tests := []struct {
		name      string
		location  string
		allowHTTP bool
		want      string
		wantErr   string
	}{
		{name: "relative", location: "b.tgz", want: "https://files.example/a/b.tgz"},
		{name: "absolute path", location: "/x/b.tgz#frag", want: "https://files.example/x/b.tgz"},
		{name: "other https host", location: "https://cdn.example/b", want: "https://cdn.example/b"},
		{name: "downgrade to http", location: "http://cdn.example/b?token=1", wantErr: "refusing redirect to http://cdn.example/b?…"},
		{name: "downgrade to http even when allowed", location: "http://cdn.example/b", allowHTTP: true, wantErr: "refusing redirect to http://cdn.example/b"},
		{name: "user info", location: "https://u:p@cdn.example/b", wantErr: "refusing redirect to a URL with credentials (https://cdn.example/b)"},
		{name: "file scheme", location: "file:///etc/passwd", wantErr: `refusing redirect to scheme "file"`},
		{name: "no location", location: "", wantErr: "without a Location"},
		{name: "bad URL", location: "https://[::1", wantErr: "invalid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nextHop(from, tt.location, tt.allowHTTP)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("nextHop(%q) = %v, %v, want error %q", tt.location, got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "u:p") {
					t.Errorf("nextHop(%q) error %q shows credentials", tt.location, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("nextHop(%q) = %v, %v, want %s", tt.location, got, err, tt.want)
			}
		})
	}
}

func TestFetcherRetryLogsWithoutSecrets(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			http.Error(w, "busy", http.StatusBadGateway)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	f, logs := newTestFetcher(t, FetchConfig{Client: srv.Client()})
	m := spec.Machine{Name: "a", Source: srv.URL + "/a.tgz?X-Amz-Signature=topsecret", Username: "fetcher", Password: "pa55word"}
	if _, err := fetchAll(t, f, m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "retrying") || !strings.Contains(logs.String(), "HTTP 502") {
		t.Errorf("logs do not report the retry:\n%s", logs)
	}
	for _, secret := range []string{"pa55word", "fetcher", "topsecret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}

func writeCredential(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
