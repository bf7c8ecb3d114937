package manager

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"

	"github.com/mms-io/mms/spec"
)

// TestFetcherCloseIdleConnections checks that a Fetcher's owner can drop
// the keep-alive connections it leaves after a download: without
// CloseIdleConnections the client's read and write loops (and the server's
// handler of the connection) live on for the transport's idle timeout,
// once per stopped machine.
func TestFetcherCloseIdleConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("archive bytes"))
	}))
	defer srv.Close()
	leaks := goleak.IgnoreCurrent()

	f, err := NewFetcher(FetchConfig{AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.Open(t.Context(), spec.Machine{Name: "web", Source: srv.URL + "/web.tar.gz"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	f.CloseIdleConnections()
	goleak.VerifyNone(t, leaks)
}
