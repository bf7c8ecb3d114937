package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestUntilExit checks that a wait on an agent's events ends as soon as
// the agent stops, whether it runs in this process or as a child, with
// why it stopped; and not before.
func TestUntilExit(t *testing.T) {
	b := &bench{cfg: Config{RunAgent: func(_ context.Context, _ []string, stderr io.Writer) error {
		fmt.Fprintln(stderr, "refusing the state directory")
		return errors.New("exit status 1")
	}}}
	failing, err := startCmd(exec.Command("sh", "-c", "echo no such key >&2; exit 3"), "a test process")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		agent interface {
			stopped() <-chan struct{}
			exited() (error, bool)
		}
		want []string
	}{
		{"in this process", b.startInProcess(nil), []string{"exit status 1", "refusing the state directory"}},
		{"a child process", failing, []string{"exit status 3", "no such key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := untilExit(t.Context(), tt.agent)
			defer cancel()
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
				t.Fatal("the context did not end when the agent stopped")
			}
			cause := context.Cause(ctx)
			for _, w := range tt.want {
				if cause == nil || !strings.Contains(cause.Error(), w) {
					t.Errorf("cause = %v, want it to say %q", cause, w)
				}
			}
		})
	}

	t.Run("running", func(t *testing.T) {
		c, err := startCmd(exec.Command("sleep", "60"), "a test process")
		if err != nil {
			t.Fatal(err)
		}
		defer c.stop()
		ctx, cancel := untilExit(t.Context(), c)
		select {
		case <-ctx.Done():
			t.Fatalf("the context ended while the agent runs: %v", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
		cancel()
		if !errors.Is(context.Cause(ctx), context.Canceled) {
			t.Errorf("cause after cancel = %v, want context.Canceled", context.Cause(ctx))
		}
	})
}

// TestPutRowEndsWhenTheAgentStops runs the put row with an agent that
// refuses to start: the row fails with the agent's own words at once,
// not after the minute it would wait for the agent's first version.
func TestPutRowEndsWhenTheAgentStops(t *testing.T) {
	cfg := Config{Only: []string{GroupPut}, Quick: true, Dir: t.TempDir(),
		RunAgent: func(_ context.Context, _ []string, stderr io.Writer) error {
			fmt.Fprintln(stderr, "mms: refusing the state directory")
			return errors.New("mms agent exited with status 1")
		}}
	wantFailsAtOnce(t, cfg, "refusing the state directory")
}

// wantFailsAtOnce runs cfg's one row group, whose agents stop at once: its
// one row must fail with their words (want) well before the minute the
// row gives its agents to run a version.
func wantFailsAtOnce(t *testing.T, cfg Config, want string) {
	t.Helper()
	start := time.Now()
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the %s row took %v to see that its agents had stopped", cfg.Only[0], took)
	}
	if len(rep.Rows) != 1 || !strings.Contains(rep.Rows[0].Error, want) {
		t.Errorf("rows = %+v, want the %s row failed with the agents' error %q", rep.Rows, cfg.Only[0], want)
	}
}

// TestProcsRowEndsWhenAnAgentStops runs the procs row with agent processes
// that exit at once: the row fails with their own words at once, not after
// the minute and more it would wait for them to run the first version.
func TestProcsRowEndsWhenAnAgentStops(t *testing.T) {
	cfg := Config{Only: []string{GroupProcs}, Quick: true, ProcAgents: 2, Dir: t.TempDir(),
		AgentCommand: func(ctx context.Context, _ []string) *exec.Cmd {
			return exec.CommandContext(ctx, "sh", "-c", "echo mms: no public key to trust >&2; exit 2")
		}}
	wantFailsAtOnce(t, cfg, "no public key to trust")
}
