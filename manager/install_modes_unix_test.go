//go:build unix

package manager

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
)

// TestInstallNormalisesModes installs an archive whose author asked for
// group- and world-writable files and directories, setuid and sticky bits:
// every installed file is 0644, or 0755 when the archive marks it
// executable, every directory 0755, so no other user can change what the
// agent runs, and the agent's users can run it. The process umask changes
// nothing: neither 0 (no bits taken away) nor 077.
func TestInstallNormalisesModes(t *testing.T) {
	for _, umask := range []int{0, 0o077} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			testInstallModes(t)
		})
	}
}

func testInstallModes(t *testing.T) {

	yaml := testMachineYAML("web", "9.0.0")
	files := map[string]string{"machine.yaml": yaml, "run.sh": "echo hi\n", "data": "x", "sub/conf": "y", "sub/tool": "z"}
	entry := func(name string, mode int64) hostileEntry {
		e := hostileFile("web/"+name, files[name])
		e.hdr.Mode = mode
		return e
	}
	sums := hostileFile("web/SHA256SUMS", hostileSums(t, files))
	sums.hdr.Mode = 0o666
	entries := []hostileEntry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "web/", Mode: 0o777}},
		sums,
		entry("machine.yaml", 0o666),
		entry("run.sh", 0o4777),
		entry("data", 0o662),
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "web/sub/", Mode: 0o1777}},
		entry("sub/conf", 0o646),
		entry("sub/tool", 0o2775),
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	data, m := hostileTgz(t, srv.URL+"/web.tgz", entries)
	mux.HandleFunc("/web.tgz", func(w http.ResponseWriter, _ *http.Request) { w.Write(data) })
	env := newTestEnv(t, nil, FetchConfig{AllowHTTP: true})
	if out, _, err := env.inst.Install(t.Context(), m, 1); err != nil || out != EntryInstalled {
		t.Fatalf("Install = %q, %v, want %q", out, err, EntryInstalled)
	}

	want := map[string]fs.FileMode{
		".": fs.ModeDir | 0o755, "SHA256SUMS": 0o644, "machine.yaml": 0o644, "run.sh": 0o755, "data": 0o644,
		"sub": fs.ModeDir | 0o755, "sub/conf": 0o644, "sub/tool": 0o755,
	}
	live := filepath.Join(env.machines, "web")
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(live, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(live, p)
		got[filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("installed %s has mode %v, want %v", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("installed tree = %v, want exactly %v", got, want)
	}
}
