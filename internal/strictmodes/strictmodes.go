// Package strictmodes refuses directories that someone other than the
// agent's user (or root) could change, the way sshd's StrictModes refuses a
// home directory others can write. An agent runs what its state and
// machines directories hold, often as root: if another user can write such
// a directory, or any directory above it, that user can plant or swap a
// machine and have it run as the agent.
package strictmodes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnsafe is returned (as an *UnsafeError) for a directory others could
// change.
var ErrUnsafe = errors.New("unsafe directory")

// UnsafeError names the path that makes a directory unsafe, why, and the
// fix.
type UnsafeError struct {
	// Dir is the directory that was checked.
	Dir string
	// Path is the offending path: Dir itself or one of its parents (or a
	// symbolic link on the way).
	Path string
	// Problem says what is wrong with Path.
	Problem string
	// Fix is a command or action that makes Path safe.
	Fix string
}

func (e *UnsafeError) Error() string {
	if e.Path == e.Dir {
		return fmt.Sprintf("%s %s; fix: %s", e.Path, e.Problem, e.Fix)
	}
	return fmt.Sprintf("%s: its parent %s %s; fix: %s", e.Dir, e.Path, e.Problem, e.Fix)
}

// Is makes errors.Is(err, ErrUnsafe) true.
func (e *UnsafeError) Is(target error) bool { return target == ErrUnsafe }

// Check returns an *UnsafeError unless dir, and every directory above it up
// to /, can only be changed by root or uid:
//
//   - each is owned by root or uid;
//   - dir is writable by neither its group nor others;
//   - a parent is writable by neither, or has the sticky bit (like /tmp),
//     which keeps others from renaming or removing what they do not own.
//
// Symbolic links on the way must be owned by root or uid, and the
// directories they lead to are checked too. Parts of dir that do not exist
// yet are skipped: whoever creates them (0700, as uid) owns them. Other
// errors (a path that is not a directory, stat failures) are returned as
// they are.
func Check(dir string, uid int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	c := checker{dir: abs, uid: uid}
	existing, err := c.walk(abs, true)
	if err != nil || existing == "" {
		return err
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return fmt.Errorf("check %s: %w", abs, err)
	}
	if real != existing {
		// The resolved path ends in dir itself only if dir exists.
		if _, err := c.walk(real, existing == abs); err != nil {
			return err
		}
	}
	return nil
}

type checker struct {
	dir string
	uid int
}

// walk checks every existing prefix of path, from / down, and returns the
// longest one that exists. endsInDir says path itself is the directory
// checked (not one of its parents).
func (c checker) walk(path string, endsInDir bool) (existing string, err error) {
	prefixes := []string{path}
	for p := path; p != filepath.Dir(p); {
		p = filepath.Dir(p)
		prefixes = append(prefixes, p)
	}
	for i := len(prefixes) - 1; i >= 0; i-- {
		p := prefixes[i]
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return existing, nil
		}
		if err != nil {
			return "", fmt.Errorf("check %s: %w", c.dir, err)
		}
		if err := c.check(p, fi, i == 0 && endsInDir); err != nil {
			return "", err
		}
		existing = p
	}
	return existing, nil
}

// check checks one path: leaf is whether it is the directory itself (at
// the end of the path as given or as resolved).
func (c checker) check(p string, fi fs.FileInfo, leaf bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("check %s: no owner information for %s", c.dir, p)
	}
	owner := int(st.Uid)
	if owner != 0 && owner != c.uid {
		return &UnsafeError{Dir: c.dir, Path: p,
			Problem: fmt.Sprintf("is owned by %s, not by root or the agent's user %s", describeUser(owner), describeUser(c.uid)),
			Fix:     fmt.Sprintf("chown %s %s, or use a directory that only root or %s can change", userName(c.uid), p, describeUser(c.uid))}
	}
	mode := fi.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		return nil // its target is checked after the walk
	case !mode.IsDir():
		return fmt.Errorf("check %s: %s is not a directory", c.dir, p)
	}
	writable := mode.Perm() & 0o022
	if writable == 0 || !leaf && mode&fs.ModeSticky != 0 {
		return nil
	}
	who := map[fs.FileMode]string{0o020: "its group", 0o002: "others", 0o022: "its group and others"}[writable]
	problem := fmt.Sprintf("is writable by %s (%s)", who, mode)
	if !leaf {
		problem += " without the sticky bit"
	}
	return &UnsafeError{Dir: c.dir, Path: p, Problem: problem + ": they could replace what the agent runs",
		Fix: "chmod go-w " + p + ", or use another directory"}
}

// describeUser shows a uid with its name when it has one: "uid 1000 (alice)".
func describeUser(uid int) string {
	if name := userName(uid); name != strconv.Itoa(uid) {
		return fmt.Sprintf("uid %d (%s)", uid, name)
	}
	return fmt.Sprintf("uid %d", uid)
}

// userName is the name of uid, or the number.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" && !strings.ContainsAny(u.Username, " \t\n") {
		return u.Username
	}
	return strconv.Itoa(uid)
}
