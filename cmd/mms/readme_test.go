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

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/repotest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/internal/treetest"
)

// walkthroughHeading is the README section TestReadmeWalkthrough pastes.
const walkthroughHeading = "## From nothing to a running machine"

// readmeCommands returns the commands of the first sh block after heading
// in the README (see [repotest.Commands]).
func readmeCommands(t *testing.T, readme, heading string) []string {
	t.Helper()
	return repotest.Commands(t, repotest.Block(t, readme, heading))
}

// TestReadmeWalkthrough pastes every command of the README's walkthrough,
// verbatim, into sh, in a fresh copy of the repository, with the real mms
// binary on PATH and nothing else set up: a home, nats configuration and
// default state directory of its own. The agent and the events follower
// keep running in the background (as in their own terminals); every other
// command must exit 0. The facts machine must then run on the node, as
// the events follower and mms status show.
func TestReadmeWalkthrough(t *testing.T) {
	readme := readFile(t, filepath.Join("..", "..", "README.md"))
	cmds := readmeCommands(t, readme, walkthroughHeading)
	// The agent listens on the default address, as the README says.
	if l, err := net.Listen("tcp", "127.0.0.1:4222"); err != nil {
		t.Skipf("the walkthrough's agent needs 127.0.0.1:4222, which is in use here: %v", err)
	} else {
		l.Close()
	}

	repo := t.TempDir()
	treetest.Copy(t, filepath.Join("..", ".."), repo)
	home := t.TempDir()
	env := []string{
		"PATH=" + filepath.Dir(mmsBinary(t)) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		stateDirEnv + "=" + filepath.Join(home, "state"), natsbox.EnvURL + "=", natsbox.EnvContext + "=",
	}
	shell := func(cmd string) *exec.Cmd {
		// exec: a long-running command is the shell's process, so it gets
		// the signals.
		c := exec.Command("sh", "-c", "exec "+cmd)
		c.Dir, c.Env = repo, append(os.Environ(), env...)
		return c
	}
	var events *syncbuf.Buffer
	for _, cmd := range cmds {
		t.Logf("$ %s", cmd)
		switch {
		case strings.HasPrefix(cmd, "mms agent "):
			startShellAgent(t, shell(cmd), cmd)
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
