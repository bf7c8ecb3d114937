package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Names of the installer's temporaries in M. Every one starts with a dot,
// so the host never loads it.
const (
	stagePrefix = ".stage-"
	trashPrefix = ".trash-"
	prevPrefix  = ".prev-"
)

func (i *Installer) livePath(name string) string { return filepath.Join(i.machines, name) }
func (i *Installer) prevPath(name string) string { return filepath.Join(i.machines, prevPrefix+name) }

// newTemp creates an empty, private directory M/<prefix><name>-<rand>.
func (i *Installer) newTemp(prefix, name string) (string, error) {
	dir, err := os.MkdirTemp(i.machines, prefix+name+"-*")
	if err != nil {
		return "", fmt.Errorf("create %s directory: %w", strings.Trim(prefix, ".-"), err)
	}
	return dir, nil
}

// tempOwner returns the machine a temporary in M belongs to: the entry
// name is <prefix><name>-<rand>, and <rand> never contains "-".
func tempOwner(entry, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(entry, prefix)
	if !ok {
		return "", false
	}
	cut := strings.LastIndexByte(rest, '-')
	if cut <= 0 {
		return "", false
	}
	return rest[:cut], true
}

// dirExists reports whether path is an existing directory (not following a
// final symlink).
func dirExists(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", path)
	}
	return true, nil
}

// nameLocks serializes operations on the same machine.
type nameLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the holder unlocks
}

// lock waits until no other operation holds name, or ctx is done, and
// returns the function that releases it.
func (l *nameLocks) lock(ctx context.Context, name string) (func(), error) {
	for {
		l.mu.Lock()
		wait, busy := l.held[name]
		if !busy {
			done := make(chan struct{})
			l.held[name] = done
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, name)
				l.mu.Unlock()
				close(done)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}
