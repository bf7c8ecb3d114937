package manager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mms-io/mms/spec"
)

func TestVerifyDetectsTampering(t *testing.T) {
	a := buildArchive(t, "web", "1", map[string]string{"bin/run.sh": "echo hi\n", "conf/a.conf": "a=1\n"})
	tests := []struct {
		name    string
		tamper  func(t *testing.T, live string)
		wantErr string
	}{
		{name: "file changed", tamper: func(t *testing.T, live string) {
			writeTestFile(t, filepath.Join(live, "conf/a.conf"), "a=2\n")
		}, wantErr: "conf/a.conf"},
		{name: "file changed, same size", tamper: func(t *testing.T, live string) {
			writeTestFile(t, filepath.Join(live, "conf/a.conf"), "a=9\n")
		}, wantErr: "conf/a.conf"},
		{name: "file added", tamper: func(t *testing.T, live string) {
			writeTestFile(t, filepath.Join(live, "bin/evil.sh"), "rm -rf /\n")
		}, wantErr: "bin/evil.sh"},
		{name: "file removed", tamper: func(t *testing.T, live string) {
			if err := os.Remove(filepath.Join(live, "bin/run.sh")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "bin/run.sh"},
		{name: "mode made world-writable", tamper: func(t *testing.T, live string) {
			if err := os.Chmod(filepath.Join(live, "bin/run.sh"), 0o666); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "bin/run.sh"},
		{name: "setuid added", tamper: func(t *testing.T, live string) {
			if err := os.Chmod(filepath.Join(live, "bin/run.sh"), 0o755|os.ModeSetuid); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "bin/run.sh"},
		{name: "SHA256SUMS rewritten", tamper: func(t *testing.T, live string) {
			writeTestFile(t, filepath.Join(live, "SHA256SUMS"), "")
		}, wantErr: "SHA256SUMS"},
		{name: "symlink planted", tamper: func(t *testing.T, live string) {
			if err := os.Symlink("/etc/passwd", filepath.Join(live, "conf/link")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "conf/link"},
		{name: "machine directory removed", tamper: func(t *testing.T, live string) {
			if err := os.RemoveAll(live); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "is missing"},
	}
	for _, tt := range tests {
		for _, full := range []bool{false, true} {
			t.Run(tt.name+map[bool]string{false: "/cheap", true: "/full"}[full], func(t *testing.T) {
				srv := newFileServer(t, true)
				env := newTestEnv(t, srv.Server, FetchConfig{})
				if _, _, err := env.inst.Install(t.Context(), a.entry(srv.put("/w", a.data)), 1); err != nil {
					t.Fatal(err)
				}
				// A cheap check first, so the verifier remembers the files.
				if err := env.inst.Verify(t.Context(), "web", false); err != nil {
					t.Fatalf("Verify(web) before tampering = %v", err)
				}
				tt.tamper(t, filepath.Join(env.machines, "web"))
				err := env.inst.Verify(t.Context(), "web", full)
				if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Verify(web, %v) after %s = %v, want ErrTampered naming %q", full, tt.name, err, tt.wantErr)
				}
			})
		}
	}
}

// TestInstallAdoptsExtractedTree: the installer hashes every file once, as
// it extracts it. The cheap checks that follow an install or an upgrade
// (the reconciler verifies before each install) hash nothing, in both swap
// modes; an edit made after the install is still hashed and found, and a
// rollback (a tree the installer did not just extract) is hashed again.
func TestInstallAdoptsExtractedTree(t *testing.T) {
	for _, noExchange := range []bool{false, true} {
		t.Run(fmt.Sprintf("noExchange=%v", noExchange), func(t *testing.T) {
			srv := newFileServer(t, true)
			env := newTestEnv(t, srv.Server, FetchConfig{})
			env.inst.noExchange = noExchange
			ctx := t.Context()
			big := strings.Repeat("z", 1<<20)
			v1 := buildArchive(t, "web", "1", map[string]string{"a": "1", "lib/big": big})
			v2 := buildArchive(t, "web", "2", map[string]string{"a": "2", "lib/big": big + "2"})
			e1, e2 := v1.entry(srv.put("/1", v1.data)), v2.entry(srv.put("/2", v2.data))
			hashed := env.inst.verifier.HashedBytes

			for _, e := range []struct {
				m   spec.Machine
				out EntryOutcome
			}{{e1, EntryInstalled}, {e2, EntryUpdated}} {
				if out, _, err := env.inst.Install(ctx, e.m, 1); err != nil || out != e.out {
					t.Fatalf("Install = %q, %v, want %q", out, err, e.out)
				}
				if err := env.inst.Verify(ctx, "web", false); err != nil {
					t.Fatalf("Verify(cheap) after %s = %v", e.out, err)
				}
				if got := hashed(); got != 0 {
					t.Fatalf("Verify(cheap) after %s hashed %d bytes, want 0 (the installer hashed them as it extracted them)", e.out, got)
				}
			}
			if out, _, err := env.inst.Install(ctx, e2, 2); err != nil || out != EntryUnchanged || hashed() != 0 {
				t.Fatalf("Install(v2 again) = %q, %v with %d bytes hashed, want %q and 0", out, err, hashed(), EntryUnchanged)
			}

			writeTestFile(t, filepath.Join(env.machines, "web", "a"), "evil")
			if err := env.inst.Verify(ctx, "web", false); !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify(cheap) after an edit = %v, want ErrTampered", err)
			}
			if got := hashed(); got != int64(len("evil")) {
				t.Errorf("Verify(cheap) after an edit hashed %d bytes, want %d (the edited file alone)", got, len("evil"))
			}

			if out, _, err := env.inst.Install(ctx, e2, 3); err != nil || out != EntryUpdated {
				t.Fatalf("Install(v2) over the edit = %q, %v, want %q", out, err, EntryUpdated)
			}
			if err := env.inst.Rollback(ctx, "web"); err != nil {
				t.Fatalf("Rollback() = %v", err)
			}
			before := hashed()
			if err := env.inst.Verify(ctx, "web", false); err != nil {
				t.Fatalf("Verify(cheap) after a rollback = %v", err)
			}
			if got, want := hashed()-before, int64(len("1")+len(big)); got < want {
				t.Errorf("Verify(cheap) after a rollback hashed %d bytes, want at least %d (v1's files)", got, want)
			}
		})
	}
}
