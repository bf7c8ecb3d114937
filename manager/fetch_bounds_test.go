package manager

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// hangBound is how long a bounded download may take in these tests before
// the test reports it hung: far above any bound under test, far below the
// defaults the old code waited for (the idle timeout, the attempt deadline).
const hangBound = 20 * time.Second

// fetchBounded fetches m in the background and fails the test if it does
// not return within hangBound.
func fetchBounded(t *testing.T, f *Fetcher, m spec.Machine) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var buf bytes.Buffer
		err := f.Fetch(t.Context(), m, func(r io.Reader) error {
			buf.Reset()
			_, err := buf.ReadFrom(r)
			return err
		})
		done <- result{buf.Bytes(), err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(hangBound):
		t.Fatalf("fetch of %s did not return within %s", m.Source, hangBound)
		return nil, nil
	}
}

// lateSize is the body of dripServer's /late.
const lateSize = 64 << 10

// dripServer serves /drip one byte every 20ms without end, /long with a
// Content-Length of 1000 after which it sends one byte and waits, /late
// lateSize bytes at once after 300ms; /busy always answers 503.
func dripServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var busy atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/drip", func(w http.ResponseWriter, r *http.Request) {
		tick := time.NewTicker(20 * time.Millisecond)
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
	mux.HandleFunc("/long", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte{'x'})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		select { // answers after the tests' rate grace (50ms)
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		w.Write(bytes.Repeat([]byte{'x'}, lateSize))
	})
	mux.HandleFunc("/busy", func(w http.ResponseWriter, r *http.Request) {
		busy.Add(1)
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv, &busy
}

// TestFetcherBounds is issue 18.4 and 18.10's Content-Length: a server that
// drips bytes, one that announces more than the declared size, and one
// that keeps failing are each given up on by their bound, not by the idle
// timeout or the attempt deadline (an hour here).
func TestFetcherBounds(t *testing.T) {
	srv, busy := dripServer(t)
	slow := FetchConfig{Client: srv.Client(), IdleTimeout: time.Hour, Timeout: time.Hour}

	t.Run("Content-Length above the declared size", func(t *testing.T) {
		cfg := slow
		cfg.Retries = -1
		f, _ := newTestFetcher(t, cfg)
		_, err := fetchBounded(t, f, spec.Machine{Name: "a", Source: srv.URL + "/long", Size: 10})
		if !errors.Is(err, packer.ErrArchiveTooLarge) || !strings.Contains(err.Error(), "archive exceeds declared size 10 (Content-Length is 1000)") {
			t.Fatalf("fetch = %v, want the Content-Length refused", err)
		}
	})
	t.Run("slow drip under the minimum rate", func(t *testing.T) {
		cfg := slow
		cfg.Retries, cfg.MinRate, cfg.RateGrace = -1, 10_000, 100*time.Millisecond
		f, _ := newTestFetcher(t, cfg)
		_, err := fetchBounded(t, f, spec.Machine{Name: "a", Source: srv.URL + "/drip"})
		if !errors.Is(err, ErrDownloadTooSlow) || !strings.Contains(err.Error(), "below the minimum average of 10000 bytes/s (after a 100ms grace)") {
			t.Fatalf("fetch = %v, want %v", err, ErrDownloadTooSlow)
		}
	})
	t.Run("a late answer, then a fast body, is not too slow", func(t *testing.T) {
		// A server busy with a fleet answers after the grace, then sends at
		// full speed: the rate is the body's, the wait the idle timer's.
		cfg := slow
		cfg.Retries, cfg.MinRate, cfg.RateGrace = -1, 10_000, 50*time.Millisecond
		f, _ := newTestFetcher(t, cfg)
		got, err := fetchBounded(t, f, spec.Machine{Name: "a", Source: srv.URL + "/late"})
		if err != nil || len(got) != lateSize {
			t.Fatalf("fetch of a late answer = %d bytes, %v; want all %d", len(got), err, lateSize)
		}
	})
	t.Run("slow drip is retried, with the reason logged", func(t *testing.T) {
		cfg := slow
		cfg.Retries, cfg.MinRate, cfg.RateGrace = 1, 10_000, 50*time.Millisecond
		f, logs := newTestFetcher(t, cfg)
		_, err := fetchBounded(t, f, spec.Machine{Name: "a", Source: srv.URL + "/drip"})
		if !errors.Is(err, ErrDownloadTooSlow) || !strings.Contains(err.Error(), "gave up after 2 attempts") {
			t.Fatalf("fetch = %v, want too slow after 2 attempts", err)
		}
		if !strings.Contains(logs.String(), "archive download failed, retrying") || !strings.Contains(logs.String(), "download too slow") {
			t.Errorf("the retry was not logged with its reason:\n%s", logs)
		}
	})
	t.Run("total deadline over all attempts", func(t *testing.T) {
		cfg := slow
		cfg.Retries, cfg.Backoff, cfg.Deadline = 1_000_000, 5*time.Millisecond, 300*time.Millisecond
		f, _ := newTestFetcher(t, cfg)
		_, err := fetchBounded(t, f, spec.Machine{Name: "a", Source: srv.URL + "/busy"})
		if !errors.Is(err, ErrDownloadDeadline) || !strings.Contains(err.Error(), "total deadline of 300ms") {
			t.Fatalf("fetch = %v, want %v", err, ErrDownloadDeadline)
		}
		if n := busy.Load(); n >= 1_000_000 {
			t.Errorf("%d attempts: the deadline did not stop the retries", n)
		}
	})
	t.Run("the default minimum rate applies", func(t *testing.T) {
		f, err := NewFetcher(FetchConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if f.cfg.MinRate != DefaultMinRate || f.cfg.RateGrace != DefaultRateGrace || f.archiveDeadline(spec.Machine{}) != DefaultArchiveDeadline {
			t.Errorf("defaults = rate %d grace %v deadline %v", f.cfg.MinRate, f.cfg.RateGrace, f.archiveDeadline(spec.Machine{}))
		}
		big := spec.Machine{Size: 1 << 30}
		if d := f.archiveDeadline(big); d < f.attemptTimeout(big) {
			t.Errorf("deadline of a 1 GiB archive %v is shorter than one attempt %v", d, f.attemptTimeout(big))
		}
	})
}

// progressLog records progress reports; first is closed by the first.
type progressLog struct {
	mu    sync.Mutex
	calls []progressCall
	first chan struct{}
}

type progressCall struct {
	name        string
	done, total int64
}

func (p *progressLog) ReportProgress(name string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, progressCall{name, done, total})
	if len(p.calls) == 1 && p.first != nil {
		close(p.first)
	}
}

func (p *progressLog) snapshot() []progressCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]progressCall(nil), p.calls...)
}

// TestFetcherProgress is issue 14.7 at the fetcher: a download slower than
// the progress delay reports bytes done of the announced total, rising,
// and a last report at its end; a quick one reports nothing.
func TestFetcherProgress(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 100)
	prog := &progressLog{first: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		w.Write(payload[:100])
		w.(http.Flusher).Flush()
		select { // the rest only once progress was seen
		case <-prog.first:
		case <-r.Context().Done():
			return
		}
		w.Write(payload[100:])
	})
	mux.HandleFunc("/quick", func(w http.ResponseWriter, r *http.Request) { w.Write(payload) })
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	f, _ := newTestFetcher(t, FetchConfig{Client: srv.Client(), Progress: prog, ProgressDelay: 10 * time.Millisecond, ProgressInterval: 10 * time.Millisecond})

	// A download shorter than the delay reports nothing.
	patient, _ := newTestFetcher(t, FetchConfig{Client: srv.Client(), Progress: prog, ProgressDelay: time.Hour})
	if _, err := fetchBounded(t, patient, spec.Machine{Name: "quick", Source: srv.URL + "/quick"}); err != nil {
		t.Fatal(err)
	}
	got, err := fetchBounded(t, f, spec.Machine{Name: "slow", Source: srv.URL + "/slow"})
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("fetch = %d bytes, %v", len(got), err)
	}
	calls := prog.snapshot()
	if len(calls) < 2 {
		t.Fatalf("progress calls = %+v, want at least a report and the last one", calls)
	}
	for i, c := range calls {
		if c.name != "slow" || c.total != int64(len(payload)) || (i > 0 && c.done < calls[i-1].done) {
			t.Errorf("progress call %d = %+v, want slow, rising, of %d", i, c, len(payload))
		}
	}
	if first, last := calls[0], calls[len(calls)-1]; first.done != 100 || last.done != int64(len(payload)) {
		t.Errorf("progress went from %d to %d bytes, want 100 to %d", first.done, last.done, len(payload))
	}
}

// TestMachineInstallerLogsRetries: the installer the watchers build logs
// every download retry with its reason (it used to drop them).
func TestMachineInstallerLogsRetries(t *testing.T) {
	a := buildArchive(t, "web", "1.0.0", nil)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			http.Error(w, "busy", http.StatusBadGateway)
			return
		}
		w.Write(a.data)
	}))
	t.Cleanup(srv.Close)
	logs := &syncbuf.Buffer{}
	dir := t.TempDir()
	inst, err := NewMachineInstaller(InstallSettings{
		MachinesDir: filepath.Join(dir, "machines"), StateDir: filepath.Join(dir, "state"), AllowHTTP: true,
		Log: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := inst.Install(t.Context(), a.entry(srv.URL+"/web.tgz"), 1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "archive download failed, retrying") || !strings.Contains(logs.String(), "HTTP 502") {
		t.Errorf("logs do not report the retry and its reason:\n%s", logs)
	}
}

// TestFetcherProgressFromResponse: the progress clock starts when the
// response arrives, so a small download that waits for a busy server
// longer than the progress delay (a fleet queued on one server) reports
// nothing: neither a progress event nor a status write per waiting node.
func TestFetcherProgressFromResponse(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 100)
	prog := &progressLog{}
	const delay = 10 * time.Millisecond
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * delay) // a busy server: the answer comes several progress delays late
		w.Write(payload)
	}))
	t.Cleanup(srv.Close)
	f, _ := newTestFetcher(t, FetchConfig{Client: srv.Client(), Progress: prog, ProgressDelay: delay, ProgressInterval: delay})
	got, err := fetchBounded(t, f, spec.Machine{Name: "queued", Source: srv.URL + "/"})
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("fetch = %d bytes, %v", len(got), err)
	}
	if calls := prog.snapshot(); len(calls) != 0 {
		t.Errorf("progress calls = %+v, want none: the download was quick once the server answered", calls)
	}
}
