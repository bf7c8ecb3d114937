package archivewatcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/machine"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

const (
	sumA = "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf"
	sumB = "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339"
)

// props returns valid properties with target, changed by the given
// key/value pairs (a nil value deletes the key).
func props(t testing.TB, target string, kv ...any) string {
	t.Helper()
	m := map[string]any{
		"source": "https://repo.example.net/facts-1.0.0.tar.gz", "checksum": sumA,
		"verify": "SHA256SUMS", "verify_checksum": sumB, "creates": "facts", "target": target,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		props   string
		wantErr string
	}{
		{name: "valid", props: props(t, "/var/lib/mms/data")},
		{name: "everything", props: props(t, "/opt/app", "auth", "repo", "timeout", "2m", "governor", "downloads", "governor_timeout", "10m", "state_dir", "/var/lib/mms/archive", "allow_http", true, "source", "http://repo.example.net/f.tgz")},
		{name: "choria basic auth", props: props(t, "/opt/app", "username", "bob", "password", "secret")},
		{name: "insecure refused", props: props(t, "/opt/app", "insecure", true), wantErr: "insecure: not supported: TLS verification is never skipped"},
		{name: "missing target", props: props(t, "/opt/app", "target", nil), wantErr: "target: required"},
		{name: "relative target", props: props(t, "opt/app"), wantErr: `target: "opt/app" must be an absolute path`},
		{name: "unclean target", props: props(t, "/opt/../etc"), wantErr: "is not clean"},
		{name: "root target", props: props(t, "/"), wantErr: `target: "/" is a system directory`},
		{name: "etc target", props: props(t, "/etc"), wantErr: `target: "/etc" is a system directory`},
		{name: "usr/local target", props: props(t, "/usr/local"), wantErr: "is a system directory"},
		{name: "inside proc", props: props(t, "/proc/self"), wantErr: "virtual file system"},
		{name: "missing creates", props: props(t, "/opt/app", "creates", nil), wantErr: "creates: required"},
		{name: "traversing creates", props: props(t, "/opt/app", "creates", "../etc"), wantErr: "creates:"},
		{name: "reserved creates", props: props(t, "/opt/app", "creates", "tmp"), wantErr: "creates:"},
		{name: "missing checksum", props: props(t, "/opt/app", "checksum", nil), wantErr: "checksum: required"},
		{name: "missing verify_checksum", props: props(t, "/opt/app", "verify_checksum", nil), wantErr: "verify_checksum: required"},
		{name: "other verify file", props: props(t, "/opt/app", "verify", "MD5SUMS"), wantErr: "verify: want \"SHA256SUMS\""},
		{name: "http without allow_http", props: props(t, "/opt/app", "source", "http://repo.example.net/f.tgz"), wantErr: "source: plain http:// is not allowed"},
		{name: "credentials in source", props: props(t, "/opt/app", "source", "https://u:p@repo.example.net/f.tgz"), wantErr: "source: credentials in the URL"},
		{name: "auth with basic auth", props: props(t, "/opt/app", "auth", "repo", "username", "bob", "password", "secret"), wantErr: "auth: cannot be combined with username and password"},
		{name: "bad governor", props: props(t, "/opt/app", "governor", "a.b"), wantErr: "governor:"},
		{name: "governor_timeout alone (ignored, as in Choria)", props: props(t, "/opt/app", "governor_timeout", "1m")},
		{name: "long governor_timeout", props: props(t, "/opt/app", "governor", "downloads", "governor_timeout", "2h"), wantErr: "governor_timeout: 2h0m0s is longer than the maximum 1h0m0s"},
		{name: "long timeout", props: props(t, "/opt/app", "timeout", "2h"), wantErr: "timeout: 2h0m0s is longer than the maximum 1h0m0s"},
		{name: "relative state_dir", props: props(t, "/opt/app", "state_dir", "state"), wantErr: "state_dir:"},
		{name: "unknown property", props: props(t, "/opt/app", "templated", true), wantErr: `unknown field "templated"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watchers.Build("archive", json.RawMessage(tt.props))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Build(archive, %s) = %v, want error containing %q", tt.props, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the password", err)
			}
		})
	}
}

// fakeInstaller is an in-memory manager.MachineInstaller for one archive.
type fakeInstaller struct {
	mu       sync.Mutex
	records  map[string]manager.Record
	got      []spec.Machine
	err      error
	tampered error
	recovers int
}

func (f *fakeInstaller) Install(_ context.Context, m spec.Machine, _ uint64) (manager.EntryOutcome, *machine.Definition, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, m)
	if f.err != nil {
		return "", nil, f.err
	}
	out := manager.EntryUnchanged
	if _, ok := f.records[m.Name]; !ok || f.tampered != nil {
		out, f.tampered = manager.EntryInstalled, nil
		f.records[m.Name] = manager.Record{Name: m.Name, Checksum: m.Checksum}
	}
	return out, nil, nil
}
func (f *fakeInstaller) Rollback(context.Context, string) error { return errors.New("not used") }
func (f *fakeInstaller) Purge(context.Context, string) error    { return errors.New("not used") }
func (f *fakeInstaller) Installed() (map[string]manager.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.records), nil
}
func (f *fakeInstaller) Verify(context.Context, string, bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tampered
}
func (f *fakeInstaller) Recover(context.Context) error { f.recovers++; return nil }

// build makes an archive watcher from properties the way the registry
// does, with inst in place of the real installer.
func build(t *testing.T, p string, inst *fakeInstaller) (*Watcher, manager.InstallSettings) {
	t.Helper()
	var settings manager.InstallSettings
	w := &Watcher{newInstaller: func(s manager.InstallSettings) (manager.MachineInstaller, error) {
		settings = s
		return inst, nil
	}}
	dec := json.NewDecoder(bytes.NewReader([]byte(p)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := w.Provision(watchertest.Deps(t)); err != nil {
		t.Fatal(err)
	}
	return w, settings
}

func TestProvision(t *testing.T) {
	target := t.TempDir()
	_, s := build(t, props(t, target, "allow_http", true, "timeout", "90s", "governor", "downloads"), &fakeInstaller{records: map[string]manager.Record{}})
	if s.MachinesDir != target || s.StateDir != filepath.Join(target, StateDirName) || !s.AllowHTTP || s.FetchTimeout.String() != "1m30s" {
		t.Errorf("installer settings = %+v, want target %s, state %s/%s, http allowed, 90s timeout", s, target, target, StateDirName)
	}
	if st, err := os.Stat(s.StateDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v, %v; want a 0700 directory", st, err)
	}
	if _, err := s.Gate(t.Context(), "downloads"); err == nil || !strings.Contains(err.Error(), "no NATS connection") {
		t.Errorf("Gate(downloads) without NATS = %v, want an error saying so", err)
	}
}

func TestCheck(t *testing.T) {
	target := t.TempDir()
	inst := &fakeInstaller{records: map[string]manager.Record{}}
	w, _ := build(t, props(t, target, "auth", "repo", "governor", "downloads"), inst)
	steps := []struct {
		name     string
		before   func()
		outcome  watchers.Outcome
		prev     string // Choria's previous_outcome
		detail   string // mms's install_outcome
		tampered string
		wantErr  string
	}{
		{name: "first install", outcome: watchers.Success, prev: "downloaded", detail: "installed"},
		{name: "already installed", outcome: watchers.Unchanged, prev: "verified", detail: "unchanged"},
		{name: "tampered tree is reinstalled", before: func() { inst.tampered = tamperedTree(t) },
			outcome: watchers.Success, prev: "downloaded", detail: "installed", tampered: "run"},
		{name: "install error", before: func() { inst.err = errors.New("fetch: HTTP 503") },
			outcome: watchers.Failure, prev: "error", detail: "error", wantErr: "install " + filepath.Join(target, "facts") + ": fetch: HTTP 503"},
	}
	for i, st := range steps {
		if st.before != nil {
			st.before()
		}
		res, err := w.Check(t.Context())
		if st.wantErr == "" && err != nil || st.wantErr != "" && (err == nil || err.Error() != st.wantErr) {
			t.Fatalf("step %d (%s): Check() error = %v, want %q", i+1, st.name, err, st.wantErr)
		}
		s := res.State.(State)
		if res.Outcome != st.outcome || s.PreviousOutcome != st.prev || s.InstallOutcome != st.detail || s.Tampered != st.tampered {
			t.Errorf("step %d (%s): Check() = %v %+v, want %v, previous_outcome %q, install_outcome %q, tampered %q", i+1, st.name, res.Outcome, s, st.outcome, st.prev, st.detail, st.tampered)
		}
	}
	want := spec.Machine{Name: "facts", Source: "https://repo.example.net/facts-1.0.0.tar.gz", Checksum: sumA,
		VerifyChecksum: sumB, Verify: "SHA256SUMS", Governor: "downloads", Auth: "repo"}
	if diff := cmp.Diff(want, inst.got[0]); diff != "" {
		t.Errorf("Install() entry (-want +got):\n%s", diff)
	}
	if inst.recovers != 1 {
		t.Errorf("installer recovered %d times, want once", inst.recovers)
	}
}

func TestCheckRefusesForeignDirectory(t *testing.T) {
	target := t.TempDir()
	if err := os.Mkdir(filepath.Join(target, "facts"), 0o755); err != nil {
		t.Fatal(err)
	}
	inst := &fakeInstaller{records: map[string]manager.Record{}}
	w, _ := build(t, props(t, target), inst)
	res, err := w.Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "refusing to replace") || res.Outcome != watchers.Failure {
		t.Fatalf("Check() over a directory it did not install = %v, %v; want a refusal", res.Outcome, err)
	}
	if len(inst.got) != 0 {
		t.Errorf("Install called %d times, want 0", len(inst.got))
	}
}

// tamperedTree returns the error the installer's Verify gives for a tree
// whose file "run" no longer matches its SHA256SUMS.
func tamperedTree(t *testing.T) error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("good"))
	sums, err := packer.Sums{"run": hex.EncodeToString(d[:])}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, packer.SumsFile), sums, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(sums)
	err = packer.VerifyTree(t.Context(), dir, hex.EncodeToString(s[:]))
	if err == nil {
		t.Fatal("VerifyTree of a modified tree succeeded")
	}
	return fmt.Errorf("verify facts: %w: %w", manager.ErrTampered, err)
}
