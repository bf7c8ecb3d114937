package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/mms-io/mms/internal/benchtree"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// archive is a machine archive made with packer.CreateArchive, as `mms
// archive create` makes it.
type archive struct {
	info    packer.ArchiveInfo
	version string // of its machine.yaml
	data    []byte
	total   int64 // uncompressed bytes of its files
}

// entry is the spec entry pinning a at source.
func (a archive) entry(source string) spec.Machine {
	return spec.Machine{Name: a.info.Name, Source: source, Checksum: a.info.Checksum,
		VerifyChecksum: a.info.VerifyChecksum, Size: a.info.Size}
}

// pack archives the machine in dir as name.
func pack(ctx context.Context, dir, name, version string, total int64) (archive, error) {
	var buf bytes.Buffer
	info, err := packer.CreateArchive(ctx, dir, name, &buf)
	if err != nil {
		return archive{}, fmt.Errorf("bench: archive %s: %w", name, err)
	}
	return archive{info: info, version: version, data: buf.Bytes(), total: total}, nil
}

// smallArchive archives a small machine in dir: the machine.yaml that
// yaml makes of name and version, a script and a README, a few hundred
// bytes in all.
func smallArchive(ctx context.Context, dir, name, version string, yaml func(name, version string) string) (archive, error) {
	files := map[string]string{
		"machine.yaml": yaml(name, version),
		"check.sh":     "#!/bin/sh\n# a machine's script\nexit 0\n",
		"README":       "A machine made by mms bench.\n",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return archive{}, fmt.Errorf("bench: %w", err)
	}
	var total int64
	for name, content := range files {
		mode := os.FileMode(0o644)
		if filepath.Ext(name) == ".sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			return archive{}, fmt.Errorf("bench: %w", err)
		}
		total += int64(len(content))
	}
	return pack(ctx, dir, name, version, total)
}

// bigTree writes the install benchmark's tree (internal/benchtree: files
// files of ~50 KiB under 40 directories) with a machine.yaml of version
// 1.0.0 into dir and returns its size.
func bigTree(dir string, files int) (int64, error) {
	total, err := benchtree.WriteFiles(dir, []byte(timerMachine(bigName, "1.0.0")), files)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return total, nil
}

// bigArchive rewrites the machine.yaml of the tree in dir for version and
// archives it: every version has the same files and another checksum.
func bigArchive(ctx context.Context, dir string, total int64, version string) (archive, error) {
	if err := os.WriteFile(filepath.Join(dir, "machine.yaml"), []byte(timerMachine(bigName, version)), 0o644); err != nil {
		return archive{}, fmt.Errorf("bench: %w", err)
	}
	return pack(ctx, dir, bigName, version, total)
}

// bigName is the install benchmark machine's name.
const bigName = "big"

// timerMachine is a machine that only waits: one timer watcher that
// expires after a day. It starts no process, so the time to run it is the
// agent's own.
func timerMachine(name, version string) string {
	return "name: " + name + "\nversion: " + version + `
initial_state: running
transitions:
  - name: expire
    from: [running]
    destination: expired
watchers:
  - name: deadline
    type: timer
    state_match: [running]
    fail_transition: expire
    properties:
      timer: 24h
`
}

// idleMachine is the machine of the idle row: a timer, and a script run
// every 30 s (an exec watcher), as a monitoring check would.
func idleMachine(name, version string) string {
	return "name: " + name + "\nversion: " + version + `
initial_state: watching
transitions:
  - name: expire
    from: [watching]
    destination: expired
watchers:
  - name: check
    type: exec
    interval: 30s
    properties:
      command: ./check.sh
  - name: deadline
    type: timer
    state_match: [watching]
    fail_transition: expire
    properties:
      timer: 24h
`
}

// webName is the small machine the put and fleet rows change versions of.
const webName = "web"

// webVersion is the version string of the k-th version of web.
func webVersion(k int) string { return fmt.Sprintf("1.0.%d", k) }

// webServer is the loopback web server of the versions fetched over
// http://; a nil *webServer (every version in the object store) does
// nothing.
type webServer struct{ srv *httptest.Server }

// Close stops the server.
func (w *webServer) Close() {
	if w != nil {
		w.srv.Close()
	}
}

// DropConnections closes the agents' connections to the server, as a
// real interval between two puts does: an agent's transport closes a
// download connection idle for 90 s (Go's default), and web servers sooner
// (nginx after 75 s), whereas its NATS connection stays. Without it, a
// bench's puts, seconds apart, found every http:// agent still connected,
// which a fleet's puts, minutes or days apart, never do.
func (w *webServer) DropConnections() {
	if w != nil {
		w.srv.CloseClientConnections()
	}
}

// webVersions archives versions 0..n of web and publishes them where the
// agents fetch them from: version k from putSource(sources, k), env's object
// store (nats) or a web server on loopback (http), returned (nil when
// none is from http).
func (b *bench) webVersions(ctx context.Context, env *natsEnv, n int, sources []string) ([]spec.Machine, *webServer, error) {
	dir, err := b.dir("web")
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	var onWeb []int // the versions the web server serves
	out := make([]spec.Machine, 0, n+1)
	for k := range n + 1 {
		a, err := smallArchive(ctx, filepath.Join(dir, fmt.Sprint(k)), webName, webVersion(k), timerMachine)
		if err != nil {
			return nil, nil, err
		}
		object := fmt.Sprintf("%s-%s.tar.gz", webName, webVersion(k))
		if putSource(sources, k) == SourceHTTP {
			mux.Handle("/"+object, serveBytes(object, a.data))
			out = append(out, a.entry("/"+object))
			onWeb = append(onWeb, k)
			continue
		}
		e, err := env.upload(ctx, a, object)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		out = append(out, e)
	}
	if len(onWeb) == 0 {
		return out, nil, nil
	}
	srv := httptest.NewServer(mux)
	for _, k := range onWeb {
		out[k].Source = srv.URL + out[k].Source
	}
	return out, &webServer{srv: srv}, nil
}

// putSource is where version k of web comes from in a fleet that
// alternates sources: version 0 (the first install) from the first; then a
// warm-up round of one put per source, in order (not measured, see
// measureFleet); then the measured puts take the sources in turn, in reverse
// order every other cycle (nats, http, http, nats, nats, http…), so that a
// drift over the run (the heap, the disk, the machine's other load) weighs
// on each source alike.
func putSource(sources []string, k int) string {
	if k == 0 {
		return sources[0]
	}
	if k <= len(sources) {
		return sources[k-1]
	}
	r := k - 1 - len(sources)
	i := r % len(sources)
	if (r/len(sources))%2 == 1 {
		i = len(sources) - 1 - i
	}
	return sources[i]
}

// serveBytes serves data as the file name.
func serveBytes(name string, data []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
	})
}
