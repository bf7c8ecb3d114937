// Command mms signs, publishes and runs the desired state of a fleet: the
// operator commands (keys, pack, verify, show, put, …) and the node agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// The watcher types and machines listed in user_plugins.yaml.
	_ "github.com/mms-io/mms/plugins"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
