package manager

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/treetest"
	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// threatCase is one attack on an install: a handler serving /bad, the
// entry pointing at it, and the exact error it must produce.
type threatCase struct {
	name string
	cfg  FetchConfig
	// serve handles requests for /bad.
	serve http.HandlerFunc
	// entry returns the spec entry to install; base is the TLS server URL.
	entry func(t *testing.T, base string) spec.Machine
	// wantErr returns the error text that must appear; base as above.
	wantErr func(base string) string
	// wantIs is the sentinel the error must match (nil: none checked).
	wantIs error
	// wantRequests is how many requests /bad must receive.
	wantRequests int64
}

// hostv2 is the v2 archive every case pretends to install.
func threatArchive(t *testing.T) testArchive {
	return buildArchive(t, "web", "2.0.0", map[string]string{"run.sh": "echo two\n"})
}

func TestInstallThreats(t *testing.T) {
	v2 := threatArchive(t)
	other := buildArchive(t, "web", "3.0.0", map[string]string{"run.sh": "echo evil\n"})
	hostOf := func(base string) string { return strings.TrimPrefix(base, "https://") }
	bad := func(_ *testing.T, base string) spec.Machine { return v2.entry(base + "/bad") }

	tests := []threatCase{
		{
			name:  "endless data",
			serve: endlessArchive,
			entry: func(_ *testing.T, base string) spec.Machine {
				e := v2.entry(base + "/bad")
				e.Size = 1 << 20
				return e
			},
			wantErr:      func(string) string { return "archive exceeds declared size 1048576" },
			wantIs:       packer.ErrArchiveTooLarge,
			wantRequests: 1,
		},
		{
			name:  "endless data without a declared size hits the node cap",
			cfg:   FetchConfig{MaxSize: 2 << 20},
			serve: endlessArchive,
			entry: func(_ *testing.T, base string) spec.Machine {
				e := v2.entry(base + "/bad")
				e.Size = 0
				return e
			},
			wantErr:      func(string) string { return "archive exceeds size limit 2097152" },
			wantIs:       packer.ErrArchiveTooLarge,
			wantRequests: 1,
		},
		{
			name: "Content-Length over the declared size",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(v2.data)+1))
				w.Write(append(append([]byte(nil), v2.data...), 0))
			},
			entry: bad,
			wantErr: func(string) string {
				return fmt.Sprintf("archive exceeds declared size %d (Content-Length is %d)", len(v2.data), len(v2.data)+1)
			},
			wantIs:       packer.ErrArchiveTooLarge,
			wantRequests: 1,
		},
		{
			name: "slow retrieval",
			cfg:  FetchConfig{IdleTimeout: 50 * time.Millisecond, Retries: 1},
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Write(v2.data[:1])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			entry:        bad,
			wantErr:      func(string) string { return "download stalled: no data for 50ms (gave up after 2 attempts)" },
			wantIs:       ErrDownloadStalled,
			wantRequests: 2,
		},
		{
			name:  "wrong bytes",
			serve: func(w http.ResponseWriter, r *http.Request) { w.Write(other.data) },
			entry: func(_ *testing.T, base string) spec.Machine { e := v2.entry(base + "/bad"); e.Size = 0; return e },
			wantErr: func(string) string {
				return fmt.Sprintf("sha256 mismatch: got %s, want %s", other.info.Checksum, v2.info.Checksum)
			},
			wantIs:       packer.ErrChecksumMismatch,
			wantRequests: 1,
		},
		{
			name: "HTTP 404 error page",
			serve: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "<html>not here</html>", http.StatusNotFound)
			},
			entry:        bad,
			wantErr:      func(base string) string { return fmt.Sprintf("fetch %s/bad: HTTP 404 from %s", base, hostOf(base)) },
			wantRequests: 1,
		},
		{
			name:  "HTTP 500 is retried, then fails",
			cfg:   FetchConfig{Retries: 2},
			serve: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) },
			entry: bad,
			wantErr: func(base string) string {
				return fmt.Sprintf("HTTP 500 from %s (gave up after 3 attempts)", hostOf(base))
			},
			wantRequests: 3,
		},
		{
			name:  "missing auth ref",
			serve: func(w http.ResponseWriter, r *http.Request) { w.Write(v2.data) },
			entry: func(_ *testing.T, base string) spec.Machine {
				e := v2.entry(base + "/bad")
				e.Auth = "artifacts"
				return e
			},
			wantErr:      func(string) string { return `auth ref "artifacts" not configured on this node` },
			wantIs:       ErrAuthNotConfigured,
			wantRequests: 0,
		},
		{
			name:         "archive for another machine",
			serve:        serveArchive(buildArchive(t, "web", "2", map[string]string{packer.MachineFile: testMachineYAML("facts", "2")})),
			entry:        entryFor(buildArchive(t, "web", "2", map[string]string{packer.MachineFile: testMachineYAML("facts", "2")})),
			wantErr:      func(string) string { return `archive machine name "facts" != "web"` },
			wantRequests: 1,
		},
		{
			name: "machine.yaml with an unknown watcher type",
			serve: serveArchive(buildArchive(t, "web", "2", map[string]string{
				packer.MachineFile: strings.Replace(testMachineYAML("web", "2"), "type: timer", "type: teleport", 1)})),
			entry: entryFor(buildArchive(t, "web", "2", map[string]string{
				packer.MachineFile: strings.Replace(testMachineYAML("web", "2"), "type: timer", "type: teleport", 1)})),
			wantErr:      func(string) string { return `teleport` },
			wantIs:       machine.ErrInvalid,
			wantRequests: 1,
		},
		{
			name: "machine.yaml with an unknown property",
			serve: serveArchive(buildArchive(t, "web", "2", map[string]string{
				packer.MachineFile: strings.Replace(testMachineYAML("web", "2"), "timer: 1h", "timer: 1h\n      colour: red", 1)})),
			entry: entryFor(buildArchive(t, "web", "2", map[string]string{
				packer.MachineFile: strings.Replace(testMachineYAML("web", "2"), "timer: 1h", "timer: 1h\n      colour: red", 1)})),
			wantErr:      func(string) string { return `colour` },
			wantIs:       machine.ErrInvalid,
			wantRequests: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runThreat(t, tt)
		})
	}
}

// runThreat installs v1, then tries the case's entry and checks the error,
// the request count, and that nothing changed.
func runThreat(t *testing.T, tt threatCase) {
	var badRequests atomic.Int64
	v1 := buildArchive(t, "web", "1.0.0", map[string]string{"run.sh": "echo one\n"})
	mux := http.NewServeMux()
	mux.HandleFunc("/v1", serveArchive(v1))
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) {
		badRequests.Add(1)
		tt.serve(w, r)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	env := newTestEnv(t, srv, tt.cfg)
	ctx := t.Context()
	if _, _, err := env.inst.Install(ctx, v1.entry(srv.URL+"/v1"), 1); err != nil {
		t.Fatalf("Install(v1) = %v", err)
	}
	before := treetest.Snapshot(t, env.machines)
	recsBefore, _ := env.inst.Installed()

	e := tt.entry(t, srv.URL)
	out, _, err := env.inst.Install(ctx, e, 2)
	want := tt.wantErr(srv.URL)
	if err == nil || !strings.Contains(err.Error(), want) || out != EntryFailed {
		t.Fatalf("Install(%s) = %q, %v, want Failed with %q", tt.name, out, err, want)
	}
	t.Logf("error: %v", err)
	if !strings.HasPrefix(err.Error(), `install "web": `) {
		t.Errorf("Install error %q does not name the machine", err)
	}
	if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
		t.Errorf("Install(%s) = %v, want errors.Is %v", tt.name, err, tt.wantIs)
	}
	if got := badRequests.Load(); got != tt.wantRequests {
		t.Errorf("Install(%s) made %d requests, want %d", tt.name, got, tt.wantRequests)
	}
	treetest.AssertSame(t, env.machines, before)
	assertNoLeftovers(t, env)
	recsAfter, _ := env.inst.Installed()
	if diff := cmp.Diff(recsBefore, recsAfter); diff != "" {
		t.Errorf("records changed (-before +after):\n%s", diff)
	}
	if err := env.inst.Verify(ctx, "web", true); err != nil {
		t.Errorf("Verify(web) after the rejected install = %v", err)
	}
}

func serveArchive(a testArchive) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.Write(a.data) }
}

func entryFor(a testArchive) func(*testing.T, string) spec.Machine {
	return func(_ *testing.T, base string) spec.Machine { return a.entry(base + "/bad") }
}

// endlessArchive streams a well-formed tar.gz whose one file never ends
// (random, so it does not compress), until the client goes away.
func endlessArchive(w http.ResponseWriter, r *http.Request) {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "web/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "web/big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 60 << 20})
	buf := make([]byte, 32<<10)
	for r.Context().Err() == nil {
		rand.Read(buf)
		if _, err := tw.Write(buf); err != nil {
			return
		}
	}
}

func TestCredentialsNotLeakedByRedirect(t *testing.T) {
	v2 := threatArchive(t)
	var plainAuth []string
	var plainRequests atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainRequests.Add(1)
		plainAuth = append(plainAuth, r.Header.Get("Authorization"))
		w.Write(v2.data)
	}))
	t.Cleanup(plain.Close)
	secure := newFileServer(t, true)
	secure.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure.requests.Add(1)
		http.Redirect(w, r, plain.URL+"/web.tgz?token=abc", http.StatusFound)
	})

	for _, allowHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllowHTTP=%v", allowHTTP), func(t *testing.T) {
			env := newTestEnv(t, secure.Server, FetchConfig{AllowHTTP: allowHTTP})
			e := v2.entry(secure.URL + "/web.tgz")
			e.Username, e.Password = "fetcher", "s3cret-pw"
			before := treetest.Snapshot(t, env.machines)
			_, _, err := env.inst.Install(t.Context(), e, 1)
			want := fmt.Sprintf("refusing redirect to %s/web.tgz?…", plain.URL)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Install via an https→http redirect = %v, want %q", err, want)
			}
			if plainRequests.Load() != 0 || len(plainAuth) != 0 {
				t.Errorf("plaintext server got %d requests (Authorization %q), want none", plainRequests.Load(), plainAuth)
			}
			for _, leak := range []string{"s3cret-pw", "token=abc"} {
				if strings.Contains(err.Error(), leak) || strings.Contains(env.logs.String(), leak) {
					t.Errorf("error or logs contain %q:\n%v\n%s", leak, err, env.logs)
				}
			}
			treetest.AssertSame(t, env.machines, before)
			assertNoLeftovers(t, env)
		})
	}
}
