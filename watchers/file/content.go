package filewatcher

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/mms-io/mms/internal/atomicfile"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
)

// enforce makes the file hold the rendered contents with the mode (and the
// owner and group when set), rewriting it atomically when anything
// differs. Templated properties are rendered again first, with the facts
// and machine data of now.
func (w *Watcher) enforce() (watchers.Result, error) {
	if w.templated {
		if err := w.renderManaged(render.NewRenderer(w.deps)); err != nil {
			err = fmt.Errorf("render %s: %w", w.path, err)
			return w.result(watchers.Failure, outcomeError, err.Error()), err
		}
	}
	uid, gid, err := w.ids()
	if err != nil {
		return w.result(watchers.Failure, outcomeError, err.Error()), err
	}
	reason, err := w.drift(uid, gid)
	if err != nil {
		return w.result(watchers.Failure, outcomeError, err.Error()), err
	}
	if reason == "" {
		return w.result(watchers.Unchanged, outcomeUnchanged, ""), nil
	}
	if err := atomicfile.WriteFileOwned(w.path, w.contents, w.mode, uid, gid); err != nil {
		err = fmt.Errorf("rewrite %s (%s differed): %w", w.path, reason, err)
		return w.result(watchers.Failure, outcomeError, err.Error()), err
	}
	w.log.Info("rewrote managed file", "path", w.path, "reason", reason)
	return w.result(watchers.Success, outcomeChanged, reason), nil
}

// drift returns what differs between the file and its desired state
// ("content, mode", …), "" when nothing does.
func (w *Watcher) drift(uid, gid int) (string, error) {
	fi, err := os.Stat(w.path)
	if errors.Is(err, os.ErrNotExist) {
		return "missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", w.path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is %s, not a regular file: refusing to replace it", w.path, kind(fi.Mode()))
	}
	var diffs []string
	same, err := w.sameContent(fi)
	if err != nil {
		return "", err
	}
	if !same {
		diffs = append(diffs, "content")
	}
	if fi.Mode().Perm() != w.mode {
		diffs = append(diffs, "mode")
	}
	if fuid, fgid, ok := fileOwner(fi); ok {
		if uid >= 0 && fuid != uid {
			diffs = append(diffs, "owner")
		}
		if gid >= 0 && fgid != gid {
			diffs = append(diffs, "group")
		}
	}
	return strings.Join(diffs, ", "), nil
}

// sameContent reports whether the file (described by fi) holds the
// rendered contents.
func (w *Watcher) sameContent(fi os.FileInfo) (bool, error) {
	if fi.Size() != int64(len(w.contents)) {
		return false, nil
	}
	f, err := os.Open(w.path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", w.path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("read %s: %w", w.path, err)
	}
	return bytes.Equal(h.Sum(nil), w.sum[:]), nil
}

// kind names a non-regular file type.
func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file (" + m.Type().String() + ")"
}

// ids resolves the rendered owner and group to numeric ids; -1 for unset.
func (w *Watcher) ids() (uid, gid int, err error) {
	uid, gid = -1, -1
	if w.owner != "" {
		if uid, err = lookupID(w.owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		}); err != nil {
			return -1, -1, fmt.Errorf("owner: %w", err)
		}
	}
	if w.group != "" {
		if gid, err = lookupID(w.group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}); err != nil {
			return -1, -1, fmt.Errorf("group: %w", err)
		}
	}
	return uid, gid, nil
}

// lookupID returns name as a number when it is one, else the id lookup
// finds for it.
func lookupID(name string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	id, err := lookup(name)
	if err != nil {
		return -1, err
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return -1, fmt.Errorf("%q has non-numeric id %q", name, id)
	}
	return n, nil
}
