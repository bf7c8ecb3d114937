//go:build unix

package manager

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
)

// otherOwner is a file's info as if another user owned it.
type otherOwner struct {
	fs.FileInfo
	st *syscall.Stat_t
}

func (o otherOwner) Sys() any { return o.st }

// A credential file another user owns is refused even with mode 0600:
// whoever owns it can change it. Checked on a real file's info with only
// the owner changed, so it runs as any user.
func TestCheckCredentialFileOwner(t *testing.T) {
	path := writeCredential(t, t.TempDir(), "mine", `{"type":"bearer","token":"t"}`)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCredentialFile(fi); err != nil {
		t.Fatalf("checkCredentialFile(own 0600 file) = %v, want nil", err)
	}
	st := *fi.Sys().(*syscall.Stat_t)
	st.Uid = uint32(os.Geteuid() + 1)
	err = checkCredentialFile(otherOwner{FileInfo: fi, st: &st})
	want := fmt.Sprintf("is owned by uid %d, not by the agent's uid %d", os.Geteuid()+1, os.Geteuid())
	if err == nil || err.Error() != want {
		t.Errorf("checkCredentialFile(file of uid %d) = %v, want %q", st.Uid, err, want)
	}
}

// The same through LoadCredential on a file really owned by another user:
// only root can give a file away.
func TestLoadCredentialRefusesAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can make a file another user's; TestCheckCredentialFileOwner covers the check")
	}
	dir := t.TempDir()
	path := writeCredential(t, dir, "theirs", `{"type":"bearer","token":"t"}`)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCredential(dir, "theirs")
	want := "credential file " + path + " is owned by uid 65534, not by the agent's uid 0"
	if !errors.Is(err, ErrBadCredential) || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadCredential(file of uid 65534) = %v, want %v with %q", err, ErrBadCredential, want)
	}
}
