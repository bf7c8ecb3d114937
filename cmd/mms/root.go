package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/spf13/cobra"
)

// app carries what every command needs: the standard streams and a logger.
// Intended output goes to stdout, diagnostics to stderr.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// verbose (--verbose) also logs the connection lifecycle of operator
	// commands.
	verbose bool
	// serve, when a command sets it, is the long-running rest of that
	// command (the agent's run), which execute calls once the command tree
	// has returned and can be collected.
	serve func() error
}

// connLog is the logger of an operator command's NATS connection: its
// connect and close records are noise for a one-shot command, so only
// warnings and errors (reconnects, permission violations) show unless
// --verbose is given.
func (a *app) connLog() *slog.Logger {
	if a.verbose {
		return a.log
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// exitError carries a specific exit code out of a command.
// printJSON writes v to w as indented JSON, the form of every command's
// --json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run executes mms with args and returns the process exit code. It holds no
// global state, so tests call it directly with buffers. Writes to stderr
// are serialised: several loggers (the command's, its NATS connection's,
// whose callbacks run on their own goroutine) share it. Nothing writes
// after run returns: natsbox.Client.Close waits for the connection's last
// callback.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(stdin, stdout, stderr)
	err := a.execute(ctx, a.command(args))
	if err == nil {
		return 0
	}
	fmt.Fprintf(a.stderr, "mms: %v\n", err)
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	return 1
}

// newApp returns mms reading stdin and writing stdout and stderr (its
// writes serialised).
func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	stderr = &lockedWriter{w: stderr}
	return &app{
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
		log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// command returns the command tree, set to run args with a's streams.
func (a *app) command(args []string) *cobra.Command {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	return root
}

// execute runs the command root's arguments name, then a.serve if the
// command left it. Nothing refers to root once it has returned, so a
// long-running command does not keep the whole command tree (every
// command's flags, help and completions: about 150 KB) alive: one agent
// does not miss it, but `mms bench` runs thousands of agents in a few
// processes, where their trees were a third to almost half of the heap.
func (a *app) execute(ctx context.Context, root *cobra.Command) error {
	if err := root.ExecuteContext(ctx); err != nil || a.serve == nil {
		return err
	}
	return a.serve()
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

var _ io.Writer = (*lockedWriter)(nil)

func (a *app) rootCmd() *cobra.Command {
	build := currentBuild()
	root := &cobra.Command{
		Use:   "mms",
		Short: "Signed desired state for fleets of servers, on NATS JetStream",
		Long: `mms keeps a fleet of nodes in a signed desired state.

An operator lists "managed machines" (autonomous agents shipped as tar.gz
archives) in machines.json, signs the list with 'mms pack' and stores it in a
NATS Key-Value bucket with 'mms put'. Every node runs 'mms agent', which
watches that key, verifies the signature, installs the machines meant for it
and runs them.

  mms keys --out ops            # ops.key (secret) and ops.pub
  mms pack machines.json --key-file ops.key | mms put
  mms agent --public-key "$(cat ops.pub)"`,
		Version:       build.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(build.String())
	root.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "log NATS connection details to stderr")
	for _, c := range a.commands() {
		root.AddCommand(c)
	}
	return root
}

// commands lists every subcommand; each lives in its own file.
func (a *app) commands() []*cobra.Command {
	return []*cobra.Command{
		a.newKeysCmd(),
		a.newPackCmd(),
		a.newReconcileCmd(),
		a.newRolloutCmd(),
		a.newPlanCmd(),
		a.newNatsConfigCmd(),
		a.newInitCmd(),
		a.newVerifyCmd(),
		a.newShowCmd(),
		a.newPutCmd(),
		a.newMachineCmd(),
		a.newEventsCmd(),
		a.newGovernorCmd(),
		a.newPluginsCmd(),
		a.newArchiveCmd(),
		a.newAgentCmd(),
		a.newStatusCmd(),
		a.newWebCmd(),
		a.newBenchCmd(),
		a.newVersionCmd(),
		a.newManCmd(),
	}
}
