package strictmodes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mkdir creates dir with mode exactly (no umask).
func mkdir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chown gives path to uid, or skips the test when this process cannot.
func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	if err := os.Lchown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	me := os.Geteuid()
	tests := []struct {
		name string
		// setup returns the directory to check, and the offending path and
		// problem text when it is unsafe.
		setup       func(t *testing.T, base string) (dir, badPath, problem string)
		wantOtherEr bool
	}{
		{"private and existing", func(t *testing.T, base string) (string, string, string) {
			return mkdir(t, filepath.Join(base, "state"), 0o700), "", ""
		}, false},
		{"not created yet", func(t *testing.T, base string) (string, string, string) {
			return filepath.Join(base, "state", "machines"), "", ""
		}, false},
		{"readable by others is fine", func(t *testing.T, base string) (string, string, string) {
			return mkdir(t, filepath.Join(base, "state"), 0o755), "", ""
		}, false},
		{"group-writable", func(t *testing.T, base string) (string, string, string) {
			d := mkdir(t, filepath.Join(base, "state"), 0o770)
			return d, d, "is writable by its group (drwxrwx---): they could replace what the agent runs"
		}, false},
		{"world-writable even with the sticky bit", func(t *testing.T, base string) (string, string, string) {
			d := mkdir(t, filepath.Join(base, "state"), 0o777|os.ModeSticky)
			return d, d, "is writable by its group and others (dtrwxrwxrwx)"
		}, false},
		{"world-writable parent", func(t *testing.T, base string) (string, string, string) {
			p := mkdir(t, filepath.Join(base, "shared"), 0o777)
			return filepath.Join(p, "state"), p, "is writable by its group and others (drwxrwxrwx) without the sticky bit"
		}, false},
		{"others-writable parent, state not created yet", func(t *testing.T, base string) (string, string, string) {
			p := mkdir(t, filepath.Join(base, "shared"), 0o703)
			return filepath.Join(p, "a", "state"), p, "is writable by others (drwx----wx) without the sticky bit"
		}, false},
		{"sticky world-writable parent, like /tmp", func(t *testing.T, base string) (string, string, string) {
			p := mkdir(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			return mkdir(t, filepath.Join(p, "mms"), 0o700), "", ""
		}, false},
		{"owned by another user in a sticky directory", func(t *testing.T, base string) (string, string, string) {
			p := mkdir(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			d := mkdir(t, filepath.Join(p, "mms"), 0o700)
			chown(t, d, 65534)
			return d, d, "is owned by uid 65534"
		}, false},
		{"parent owned by another user", func(t *testing.T, base string) (string, string, string) {
			p := mkdir(t, filepath.Join(base, "srv"), 0o755)
			chown(t, p, 65534)
			return mkdir(t, filepath.Join(p, "mms"), 0o700), p, "is owned by uid 65534"
		}, false},
		{"symbolic link owned by another user", func(t *testing.T, base string) (string, string, string) {
			target := mkdir(t, filepath.Join(base, "real"), 0o700)
			link := filepath.Join(base, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			chown(t, link, 65534)
			return link, link, "is owned by uid 65534"
		}, false},
		{"symbolic link to a world-writable directory", func(t *testing.T, base string) (string, string, string) {
			target := mkdir(t, filepath.Join(base, "open"), 0o777)
			link := filepath.Join(base, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(link, "state"), target, "is writable by its group and others (drwxrwxrwx) without the sticky bit"
		}, false},
		{"symbolic link to a private directory", func(t *testing.T, base string) (string, string, string) {
			target := mkdir(t, filepath.Join(base, "private", "mms"), 0o700)
			link := filepath.Join(base, "mms")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link, "", ""
		}, false},
		{"a file on the way", func(t *testing.T, base string) (string, string, string) {
			f := filepath.Join(base, "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(f, "state"), "", ""
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, badPath, problem := tt.setup(t, t.TempDir())
			err := Check(dir, me)
			switch {
			case tt.wantOtherEr:
				if err == nil || errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "is not a directory") {
					t.Errorf("Check(%s) = %v, want a not-a-directory error", dir, err)
				}
			case badPath == "":
				if err != nil {
					t.Errorf("Check(%s) = %v, want nil", dir, err)
				}
			default:
				var ue *UnsafeError
				if !errors.As(err, &ue) || !errors.Is(err, ErrUnsafe) {
					t.Fatalf("Check(%s) = %v, want an UnsafeError", dir, err)
				}
				if ue.Path != badPath || !strings.HasPrefix(ue.Problem, problem) || ue.Fix == "" {
					t.Errorf("Check(%s) = %+v, want path %s, problem %q…, a fix", dir, ue, badPath, problem)
				}
				if !strings.Contains(err.Error(), badPath) || !strings.Contains(err.Error(), "fix: ") {
					t.Errorf("Check(%s) error %q does not name %s and the fix", dir, err, badPath)
				}
			}
		})
	}
}

// TestCheckOtherUser checks a directory for a user who does not own it:
// root's directories are fine for anyone, another user's are not.
func TestCheckOtherUser(t *testing.T) {
	dir := mkdir(t, filepath.Join(t.TempDir(), "state"), 0o700)
	chown(t, dir, 1000)
	if err := Check(dir, 1000); err != nil {
		t.Errorf("Check(%s, owner 1000) = %v, want nil: root owns the parents", dir, err)
	}
	err := Check(dir, 2000)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "is owned by uid 1000") || !strings.Contains(err.Error(), "fix: chown ") {
		t.Errorf("Check(%s, uid 2000) = %v, want it refused as owned by uid 1000 with a chown fix", dir, err)
	}
}

func TestUnsafeErrorText(t *testing.T) {
	e := &UnsafeError{Dir: "/srv/mms/state", Path: "/srv/mms", Problem: "is writable by others (drwxrwxrwx) without the sticky bit", Fix: "chmod go-w /srv/mms"}
	want := "/srv/mms/state: its parent /srv/mms is writable by others (drwxrwxrwx) without the sticky bit; fix: chmod go-w /srv/mms"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	e.Dir = e.Path
	if want := "/srv/mms is writable by others (drwxrwxrwx) without the sticky bit; fix: chmod go-w /srv/mms"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}
