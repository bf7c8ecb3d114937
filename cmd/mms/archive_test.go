package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/spec"
)

// archiveMachineYAML is a valid machine.yaml using the test binary's
// mmsclitest watcher.
func archiveMachineYAML(name, version string) string {
	return "name: " + name + "\nversion: " + version + `
initial_state: idle
transitions:
  - name: done
    from: [idle]
    destination: finished
watchers:
  - name: hello
    type: mmsclitest
    state_match: [idle]
    success_transition: done
    properties:
      message: hi
`
}

// machineDir writes a machine directory and returns its path.
func machineDir(t *testing.T, yaml string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "machine.yaml", yaml)
	writeFile(t, filepath.Join(dir, "bin"), "run.sh", "#!/bin/sh\necho hi\n")
	return dir
}

func decodeEntry(t *testing.T, out string) archiveEntry {
	t.Helper()
	var e archiveEntry
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("stdout %q is not an entry: %v", out, err)
	}
	return e
}

func fileSHA256(t *testing.T, path string) (string, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), int64(len(data))
}

func TestArchiveCreate(t *testing.T) {
	dir := machineDir(t, archiveMachineYAML("web", "1.0.0"))
	outDir := t.TempDir()
	out := filepath.Join(outDir, "web.tgz")
	r := mmsOK(t, "", "archive", "create", dir, "--out", out, "--source", "https://repo.example.net/web-1.0.0.tar.gz")
	e := decodeEntry(t, r.stdout)
	sum, size := fileSHA256(t, out)
	if e.Name != "web" || e.Source != "https://repo.example.net/web-1.0.0.tar.gz" || e.Checksum != sum || e.Size != size {
		t.Errorf("entry = %+v, want web with the file's checksum %s and size %d", e, sum, size)
	}
	m := spec.Machine{Name: e.Name, Source: e.Source, Checksum: e.Checksum, VerifyChecksum: e.VerifyChecksum, Size: e.Size}
	if err := m.Validate(spec.ValidateOptions{}); err != nil {
		t.Errorf("printed entry does not validate: %v", err)
	}
	// Deterministic: the same directory gives the same bytes.
	again := mmsOK(t, "", "archive", "create", dir, "--out", filepath.Join(outDir, "again.tgz"), "--source", e.Source)
	if decodeEntry(t, again.stdout) != e {
		t.Errorf("second archive of the same dir = %s, want %+v", again.stdout, e)
	}

	// Default name and version come from machine.yaml, written to the working directory.
	t.Chdir(outDir)
	r = mmsOK(t, "", "archive", "create", dir, "--version", "1.0.1")
	if _, err := os.Stat(filepath.Join(outDir, "web-1.0.1.tar.gz")); err != nil {
		t.Errorf("default output: %v", err)
	}
	placeholder := decodeEntry(t, r.stdout)
	if !strings.Contains(r.stderr, "hint: no --source or --upload") {
		t.Errorf("stderr %q has no hint about the source", r.stderr)
	}
	pm := spec.Machine{Name: placeholder.Name, Source: placeholder.Source, Checksum: placeholder.Checksum, VerifyChecksum: placeholder.VerifyChecksum}
	if err := pm.Validate(spec.ValidateOptions{AllowHTTP: true}); err == nil || !strings.Contains(err.Error(), "source") {
		t.Errorf("placeholder source %q validates (%v), want pack to reject it", placeholder.Source, err)
	}
	machines := writeFile(t, t.TempDir(), "machines.json", "["+r.stdout+"]")
	if p := mms(t, "", "pack", machines, "--unsigned"); p.code == 0 || !strings.Contains(p.stderr, "source") {
		t.Errorf("mms pack with the placeholder = exit %d, %s; want a source error", p.code, p.stderr)
	}
}

func TestArchiveCreateRefuses(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		args    []string
		wantErr string
	}{
		{name: "unknown watcher type", yaml: strings.Replace(archiveMachineYAML("web", "1"), "type: mmsclitest", "type: teleport", 1),
			wantErr: `unknown watcher type "teleport"`},
		{name: "unknown property", yaml: strings.Replace(archiveMachineYAML("web", "1"), "message: hi", "message: hi\n      colour: red", 1),
			wantErr: `unknown field "colour"`},
		{name: "name differs", yaml: archiveMachineYAML("web", "1"), args: []string{"--name", "facts"},
			wantErr: `--name "facts" differs from machine.yaml's name "web"`},
		{name: "no version", yaml: archiveMachineYAML("web", ""), wantErr: "version is required"},
		{name: "version with a slash", yaml: archiveMachineYAML("web", "1"), args: []string{"--version", "1/2"}, wantErr: `version "1/2"`},
		{name: "reserved name", yaml: archiveMachineYAML("tmp", "1"), wantErr: "cannot name a managed machine"},
		{name: "bad upload target", yaml: archiveMachineYAML("web", "1"), args: []string{"--upload", "https://x/y"}, wantErr: "want nats://BUCKET"},
		{name: "bad source", yaml: archiveMachineYAML("web", "1"), args: []string{"--source", "ftp://x/y"}, wantErr: `--source: machine "web": source: unsupported scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := machineDir(t, tt.yaml)
			outDir := t.TempDir()
			args := append([]string{"archive", "create", dir, "--out", filepath.Join(outDir, "a.tgz")}, tt.args...)
			r := mms(t, "", args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.wantErr) || r.stdout != "" {
				t.Fatalf("mms %s = exit %d\nstdout %s\nstderr %s\nwant an error with %q", strings.Join(args, " "), r.code, r.stdout, r.stderr, tt.wantErr)
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Errorf("a refused archive left %v", entries)
			}
		})
	}
	t.Run("output inside the machine directory", func(t *testing.T) {
		dir := machineDir(t, archiveMachineYAML("web", "1"))
		t.Chdir(dir)
		r := mms(t, "", "archive", "create", ".")
		if r.code == 0 || !strings.Contains(r.stderr, "pass --out outside the machine directory") {
			t.Fatalf("archive create . in the machine dir = exit %d, %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "web-1.tar.gz")); err == nil {
			t.Errorf("archive written inside the machine directory")
		}
	})
}

func TestArchiveCreateUpload(t *testing.T) {
	srv := natstest.RunJetStream(t)
	dir := machineDir(t, archiveMachineYAML("web", "2.1.0"))
	out := filepath.Join(t.TempDir(), "web.tgz")
	r := mmsOK(t, "", "archive", "create", dir, "--out", out, "--upload", "nats://ARCHIVES", "--server", srv.ClientURL())
	e := decodeEntry(t, r.stdout)
	if e.Source != "nats://ARCHIVES/web-2.1.0.tar.gz" {
		t.Errorf("source = %q, want the uploaded object", e.Source)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	m := spec.Machine{Name: e.Name, Source: e.Source, Checksum: e.Checksum, VerifyChecksum: e.VerifyChecksum, Size: e.Size}
	if err := m.Validate(spec.ValidateOptions{}); err != nil {
		t.Fatalf("entry does not validate: %v", err)
	}

	// The agent side fetches it back through the manager's Fetcher and installs it.
	nc := natstest.Connect(t, srv)
	f, err := manager.NewFetcher(manager.FetchConfig{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.Open(t.Context(), m)
	if err != nil {
		t.Fatalf("Open(%s) = %v", m.Source, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("fetched %d bytes, %v; want the %d-byte archive", len(got), err, len(want))
	}
	root := t.TempDir()
	inst, err := manager.NewInstaller(manager.InstallerConfig{MachinesDir: filepath.Join(root, "m"), StateDir: filepath.Join(root, "s"), Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := inst.Install(t.Context(), m, 1); err != nil || out != manager.EntryInstalled {
		t.Fatalf("Install(uploaded) = %q, %v", out, err)
	}

	// Uploading again into the now existing bucket works too.
	mmsOK(t, "", "archive", "create", dir, "--out", out, "--upload", "nats://ARCHIVES/", "--server", srv.ClientURL())
}
