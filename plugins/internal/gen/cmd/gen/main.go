// Command gen writes plugins/zz_plugins.go from user_plugins.yaml. It runs
// from `go generate ./plugins` (so in the plugins directory) and by default
// reads ../user_plugins.yaml and writes zz_plugins.go. A bad file is
// reported entry by entry and leaves zz_plugins.go untouched, and so does a
// plugin whose package the go command cannot load from this module (its
// module not required in go.mod, for one); an unchanged result is not
// rewritten.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mms-io/mms/plugins/internal/gen"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "plugins/internal/gen:", line)
		}
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	flags := flag.NewFlagSet("gen", flag.ContinueOnError)
	flags.SetOutput(stderr)
	in := flags.String("in", "../user_plugins.yaml", "the plugin list to read")
	out := flags.String("out", "zz_plugins.go", "the Go file to write")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	src, err := readCapped(*in, gen.MaxSize)
	if err != nil {
		return err
	}
	plugins, err := gen.Parse(src)
	if err != nil {
		return err
	}
	code, err := gen.Source(plugins)
	if err != nil {
		return err
	}
	if err := loadable(plugins); err != nil {
		return err
	}
	old, err := os.ReadFile(*out)
	if err == nil && bytes.Equal(old, code) {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return writeAtomic(*out, code)
}

// loadable asks the go command, in the current directory's module, to load
// every plugin's package, and reports each one it cannot load with its
// line in user_plugins.yaml. Without this check a package of a module that
// go.mod does not require (`go mod tidy` drops a requirement that no file
// imports yet) would be written into zz_plugins.go, breaking every later
// build and go generate step.
func loadable(plugins []gen.Plugin) error {
	if len(plugins) == 0 {
		return nil
	}
	args := []string{"list", "-e", "-json=ImportPath,Error"}
	for _, p := range plugins {
		args = append(args, p.ImportPath)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("load the plugin packages with go list: %w\n%s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	problems := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			ImportPath string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("read the output of go list: %w", err)
		}
		if pkg.Error != nil {
			problems[pkg.ImportPath] = strings.Join(strings.Fields(pkg.Error.Err), " ")
		}
	}
	var errs []error
	for _, p := range slices.SortedFunc(slices.Values(plugins), func(a, b gen.Plugin) int { return a.Line - b.Line }) {
		if msg, ok := problems[p.ImportPath]; ok {
			errs = append(errs, fmt.Errorf("line %d: plugin %q: cannot load package %s: %s", p.Line, p.Name, p.ImportPath, msg))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs = append(errs, errors.New("zz_plugins.go is unchanged; require each plugin's module in go.mod (go get, or go mod edit -require and -replace for a local checkout), then run go generate ./plugins before go mod tidy, which drops a requirement that no file imports yet"))
	return errors.Join(errs...)
}

// readCapped reads path, failing if it is larger than limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: larger than the %d byte limit", path, limit)
	}
	return data, nil
}

// writeAtomic replaces path with data through a temporary file in the same
// directory, so a reader sees the old file or the new one, never a part.
// The temporary name starts with a dot, which the go tool ignores.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
