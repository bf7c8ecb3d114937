package command

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// resolve finds the executable for name: a path with a slash is taken
// relative to dir; a bare name is dir's file of that name when there is
// one, else the first executable of that name in pathEnv.
func resolve(name, dir, pathEnv string) (string, error) {
	if strings.ContainsRune(name, '/') {
		if filepath.IsAbs(name) || dir == "" {
			return name, nil
		}
		return filepath.Join(dir, name), nil
	}
	if dir != "" {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" || !filepath.IsAbs(d) {
			continue // never search the working directory implicitly
		}
		p := filepath.Join(d, name)
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
