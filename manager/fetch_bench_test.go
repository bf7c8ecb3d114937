package manager

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/spec"
)

// BenchmarkFetchSmall downloads a small archive (a few hundred bytes, as
// most machines are) the way a fleet does after a put, many nodes at once:
// from a JetStream object store (nats://) and over loopback http://, each
// node with its own connection. The server's work is in the numbers: it
// runs in this process.
func BenchmarkFetchSmall(b *testing.B) {
	a := buildArchive(b, "web", "1", map[string]string{"run.sh": "echo hi\n"})
	srv := natstest.RunJetStream(b)
	js, err := jetstream.New(natstest.Connect(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	obs, err := js.CreateObjectStore(b.Context(), jetstream.ObjectStoreConfig{Bucket: "ARCHIVES"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := obs.PutBytes(b.Context(), "web-1.tgz", a.data); err != nil {
		b.Fatal(err)
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "web-1.tgz", time.Time{}, bytes.NewReader(a.data))
	}))
	b.Cleanup(web.Close)
	const nodes = 16
	for _, src := range []struct {
		name string
		m    spec.Machine
	}{
		{"nats", a.entry("nats://ARCHIVES/web-1.tgz")},
		{"http", a.entry(web.URL + "/web-1.tgz")},
	} {
		b.Run(src.name, func(b *testing.B) {
			fetchers := make([]*Fetcher, nodes)
			for i := range fetchers {
				f, err := NewFetcher(FetchConfig{Conn: natstest.Connect(b, srv), AllowHTTP: true})
				if err != nil {
					b.Fatal(err)
				}
				fetchers[i] = f
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for _, f := range fetchers {
					wg.Go(func() {
						rc, err := f.Open(b.Context(), src.m)
						if err == nil {
							var got []byte
							got, err = io.ReadAll(rc)
							rc.Close()
							if err == nil && !bytes.Equal(got, a.data) {
								err = fmt.Errorf("got %d bytes, want %d", len(got), len(a.data))
							}
						}
						if err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				n += nodes
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/fetch")
		})
	}
}
