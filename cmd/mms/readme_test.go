package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/repotest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// walkthroughHeading is the README section TestReadmeWalkthrough pastes.
const walkthroughHeading = "## From nothing to a running machine"

// readmeCommands returns the commands of the first sh block after heading
// in the README (see [repotest.Commands]).
func readmeCommands(t *testing.T, readme, heading string) []string {
	t.Helper()
	return repotest.Commands(t, repotest.Block(t, readme, heading))
}

// TestReadmeWalkthrough pastes the README's top block's agent command and
// then every command of its walkthrough, verbatim, into sh, in a fresh
// clone of the repository, as a newcomer would: the agent with `go run`
// from the clone, the walkthrough with the real mms binary on PATH, and
// nothing else set up (a home, nats configuration and default state
// directory of its own). The agent and the events follower keep running in
// the background (as in their own terminals); every other command must
// exit 0. The facts machine must then run on the node, as the events
// follower and mms status show; the clone's `git status` must be as clean
// as before (what the commands write, git ignores); and Ctrl-C must stop
// the agent cleanly.
func TestReadmeWalkthrough(t *testing.T) {
	readme := readFile(t, filepath.Join("..", "..", "README.md"))
	top := repotest.Commands(t, repotest.FirstBlock(t, readme))
	if len(top) != 2 || !strings.Contains(top[0], " agent ") || !strings.HasPrefix(top[1], "go test ") {
		t.Fatalf("the README's top block is not the two commands (the agent, the tests):\n%q", top)
	}
	cmds := readmeCommands(t, readme, walkthroughHeading)
	for _, cmd := range cmds {
		if strings.HasPrefix(cmd, "mms agent") || strings.Contains(cmd, "mms keys") {
			t.Errorf("the walkthrough repeats the top block's %q", cmd)
		}
	}
	// The agent listens on the default address, as the README says.
	if l, err := net.Listen("tcp", "127.0.0.1:4222"); err != nil {
		t.Skipf("the walkthrough's agent needs 127.0.0.1:4222, which is in use here: %v", err)
	} else {
		l.Close()
	}

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := mmsBinary(t)
	repo := filepath.Join(t.TempDir(), "mms")
	repotest.Clone(t, repotest.Snapshot(t, root), repo)
	clean := repotest.Git(t, repo, "status", "--porcelain", "--untracked-files=all")
	home := t.TempDir()
	env := append(goEnv(t, "GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOFLAGS"),
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "GOTOOLCHAIN=local", "GOWORK=off",
		"HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_STATE_HOME="+filepath.Join(home, ".local", "state"),
		stateDirEnv+"="+filepath.Join(home, "state"), natsbox.EnvURL+"=", natsbox.EnvContext+"=",
	)
	shell := func(cmd string) *exec.Cmd {
		// exec: a long-running command is the shell's process, so it gets
		// the signals.
		c := exec.Command("sh", "-c", "exec "+cmd)
		c.Dir, c.Env = repo, append(repotest.Env(), env...)
		return c
	}

	// The top block's agent, in its own process group, as in a terminal:
	// Ctrl-C reaches go run and the agent.
	agent := exec.Command("sh", "-c", top[0])
	agent.Dir, agent.Env = repo, append(repotest.Env(), env...)
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	_, agentErr := startShell(t, agent)
	natstest.Eventually(t, 5*time.Minute, func() error { // go run builds mms first
		if !strings.Contains(agentErr.String(), "agent started") {
			return fmt.Errorf("%s: not started yet:\n%s", top[0], agentErr)
		}
		return nil
	})
	stopped := false
	stopAgent := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-agent.Process.Pid, syscall.SIGINT)
		// The shell ends by the signal, as in a terminal; the agent must
		// have stopped cleanly.
		_ = agent.Wait()
		if log := agentErr.String(); !strings.HasSuffix(log, "msg=\"embedded nats server stopped\"\n") || strings.Contains(log, "level=ERROR") {
			t.Errorf("%s did not stop cleanly after Ctrl-C:\n%s", top[0], log)
		}
	}
	t.Cleanup(stopAgent)

	var events *syncbuf.Buffer
	for _, cmd := range cmds {
		t.Logf("$ %s", cmd)
		switch {
		case strings.HasPrefix(cmd, "mms events"):
			var follower *exec.Cmd
			follower, _ = startShell(t, shell(cmd))
			events = follower.Stdout.(*syncbuf.Buffer)
			t.Cleanup(func() { _ = follower.Process.Signal(syscall.SIGTERM); _ = follower.Wait() })
		default:
			out, err := shell(cmd).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
			t.Logf("%s", out)
		}
	}

	if events == nil {
		t.Fatalf("the walkthrough has no mms events command")
	}
	natstest.Eventually(t, e2eTimeout, func() error {
		if !strings.Contains(events.String(), " facts transition gathered gathering -> ready") {
			return fmt.Errorf("mms events printed no facts transition to ready:\n%s", events)
		}
		return nil
	})
	waitFactsReady(t, shell)
	if got := repotest.Git(t, repo, "status", "--porcelain", "--untracked-files=all"); got != clean {
		t.Errorf("the walkthrough left files git does not ignore in the repository's directory; git status --porcelain was\n%s\nand is\n%s", clean, got)
	}
	stopAgent()
}

// goEnv returns NAME=value for each name, as `go env` reports it here, for
// a go command run with another home.
func goEnv(t *testing.T, names ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	// One line per name; an unset variable is an empty line, so only the
	// last newline goes.
	values := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(values) != len(names) {
		t.Fatalf("go env %v printed %q", names, out)
	}
	env := make([]string, len(names))
	for i, n := range names {
		env[i] = n + "=" + values[i]
	}
	return env
}

// waitFactsReady waits until `mms status`, run by shell as the README's
// commands are, shows the walkthrough's facts machine in state ready.
func waitFactsReady(t *testing.T, shell func(string) *exec.Cmd) {
	t.Helper()
	running := regexp.MustCompile(`(?m)\(.*\bready 1\b.*\)`)
	natstest.Eventually(t, e2eTimeout, func() error {
		out, err := shell("mms status").CombinedOutput()
		if err != nil || !running.Match(out) {
			return fmt.Errorf("mms status: %v\n%s\nwant facts in ready", err, out)
		}
		return nil
	})
}

// startShell starts cmd with its stdout and stderr in buffers; it is
// killed when the test ends if it still runs.
func startShell(t *testing.T, cmd *exec.Cmd) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	stdout, stderr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, stderr
}

// TestReadmeRolloutCommands: every command the README's "Rollouts"
// section shows an operator typing ("$ mms …") is one mms accepts, with
// flags it has, and the exit codes it gives for put --wait are those
// `mms put --help` documents.
func TestReadmeRolloutCommands(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Rollouts\n")
	if !ok {
		t.Fatal("README has no Rollouts section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var n int
	for _, line := range strings.Split(section, "\n") {
		cmd, ok := strings.CutPrefix(line, "$ ")
		if !ok {
			continue
		}
		cmd, _, _ = strings.Cut(cmd, ">")
		for _, part := range strings.Split(cmd, "|") {
			args := strings.Fields(part)
			if len(args) == 0 || args[0] != "mms" {
				continue
			}
			n++
			if r := mms(t, "", append(args[1:], "--help")...); r.code != 0 {
				t.Errorf("README shows %q, which mms does not accept: exit %d: %s", part, r.code, r.stderr)
			}
		}
	}
	for _, verb := range []string{"mms plan", "mms rollout pause", "mms rollout resume", "mms rollout undo", "mms rollout status", "mms put"} {
		if !strings.Contains(section, "$ "+verb) {
			t.Errorf("the README's Rollouts section does not show %q", verb)
		}
	}
	help := mmsOK(t, "", "put", "--help").stdout
	for _, code := range []string{"  0  every agent applied the spec", "  2  an agent rejected the spec or failed an entry, or a rollout halted", "  3  DURATION ran out first"} {
		if !strings.Contains(help, code) {
			t.Errorf("mms put --help lacks the exit code %q", code)
		}
	}
	if !strings.Contains(section, "exits 0 when every agent applied the spec") || !strings.Contains(section, "3 when D ran out first") {
		t.Errorf("the README's Rollouts section does not give put --wait's exit codes")
	}
	t.Logf("%d commands checked", n)
}
