package manager

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
