package execwatcher

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// resolve finds the executable for argv[0]: a path with a slash is taken
// relative to the machine directory; a bare name is the machine directory's
// file of that name when there is one, else the first executable of that
// name in pathEnv.
func (w *Watcher) resolve(pathEnv string) (string, error) {
	name := w.argv[0]
	if strings.ContainsRune(name, '/') {
		if filepath.IsAbs(name) || w.dir == "" {
			return name, nil
		}
		return filepath.Join(w.dir, name), nil
	}
	if w.dir != "" {
		p := filepath.Join(w.dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // never search the working directory implicitly
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find command %q in the machine directory or PATH: %w", name, exec.ErrNotFound)
}

// lastValue returns the value of the last name=… entry of env (the one a
// child sees).
func lastValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}
