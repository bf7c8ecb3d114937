// Command watcherdoc writes docs/watchers.md, the reference of the
// properties of every watcher type compiled into mms (see package
// watcherdoc). It runs from `go generate ./plugins`, after zz_plugins.go is
// regenerated, and by default writes ../docs/watchers.md; an unchanged
// result is not rewritten.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/mms-io/mms/internal/atomicfile"
	_ "github.com/mms-io/mms/plugins"
	"github.com/mms-io/mms/plugins/internal/watcherdoc"
	"github.com/mms-io/mms/watchers"
)

func main() {
	out := flag.String("out", "../docs/watchers.md", "the Markdown file to write")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "watcherdoc:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	md, err := watcherdoc.Generate(watchers.Types(), dir)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, md) {
		return nil
	}
	return atomicfile.WriteFile(out, md, 0o644)
}
