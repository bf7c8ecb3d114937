// Command mms signs, publishes and runs the desired state of a fleet: the
// operator commands (keys, pack, verify, show, put, …) and the node agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	// The watcher types and machines listed in user_plugins.yaml.
	_ "github.com/mms-io/mms/plugins"
)

func main() {
	runtime.MemProfileRate = memProfileRate(os.Args[1:], runtime.MemProfileRate)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// memProfileRate is the runtime's memory profiling rate for a process run
// with args, given the default rate: none for `mms agent`, which never
// writes a heap profile and runs for months, so the samples' records and
// the profiler's bucket table (about 0.7 MB of an idle agent's resident
// memory, measured with `mms bench --only idle`) are not worth keeping;
// the default for every other command, `mms bench` among them, whose
// --put-profile writes heap profiles of the agents it runs in process.
// The runtime asks for the rate to be set once, before the program
// allocates much: main sets it first.
func memProfileRate(args []string, rate int) int {
	for _, a := range args {
		switch {
		case a == "agent":
			return 0
		case a == "-v", a == "--verbose", strings.HasPrefix(a, "--verbose="):
			// The one flag the root command takes before a subcommand.
		default:
			return rate
		}
	}
	return rate
}
