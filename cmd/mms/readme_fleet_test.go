package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/treetest"
)

// fleetHeading is the README section TestReadmeFleet pastes.
const fleetHeading = "## A fleet"

// TestReadmeFleet follows README "A fleet" from scratch on a real
// three-server cluster: every command of its sh block, verbatim, in sh,
// with the real mms binary on PATH, in a fresh copy of the repository
// holding the operator's key pair; $NATS_URL names the cluster (the
// block's export names example hosts) and /etc/mms/ a directory of the
// test's. The agent keeps running in the background. Every command must
// exit 0; then every stream the fleet uses has 3 replicas, all placed (as
// `nats stream info` shows), and the node runs the facts machine.
func TestReadmeFleet(t *testing.T) {
	readme := readFile(t, filepath.Join("..", "..", "README.md"))
	cmds := readmeCommands(t, readme, fleetHeading)
	servers := natstest.RunCluster(t, 3)
	urls := natstest.ClientURLs(servers)

	repo := t.TempDir()
	treetest.Copy(t, filepath.Join("..", ".."), repo)
	home, etc := t.TempDir(), t.TempDir()
	env := []string{
		"PATH=" + filepath.Dir(mmsBinary(t)) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		stateDirEnv + "=" + filepath.Join(home, "state"), natsbox.EnvURL + "=" + urls, natsbox.EnvContext + "=",
	}
	shell := func(cmd string) *exec.Cmd {
		cmd = strings.ReplaceAll(cmd, "/etc/mms/", etc+"/")
		c := exec.Command("sh", "-c", "exec "+cmd)
		c.Dir, c.Env = repo, append(os.Environ(), env...)
		return c
	}
	// The operator made a key pair in the walkthrough; the node trusts it.
	if out, err := shell("mms keys --out ops").CombinedOutput(); err != nil {
		t.Fatalf("mms keys: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(etc, "trusted.keys"), []byte(readFile(t, filepath.Join(repo, "ops.pub"))), 0o644); err != nil {
		t.Fatal(err)
	}
	ranAgent := false
	for _, cmd := range cmds {
		t.Logf("$ %s", cmd)
		switch {
		case strings.HasPrefix(cmd, "export NATS_URL="):
			continue // the test's cluster is in $NATS_URL already
		case strings.HasPrefix(cmd, "mms agent "):
			startShellAgent(t, shell(cmd), cmd)
			ranAgent = true
		default:
			var out []byte
			var err error
			natstest.Eventually(t, clusterTimeout, func() error { // a new cluster may still be electing
				if out, err = shell(cmd).CombinedOutput(); err != nil && strings.HasPrefix(cmd, "mms init") {
					return fmt.Errorf("%s: %v\n%s", cmd, err, out)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
			t.Logf("%s", out)
		}
	}
	if !ranAgent {
		t.Fatalf("README %q runs no agent", fleetHeading)
	}

	js, err := jetstream.New(natstest.Connect(t, servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, clusterTimeout, func() error {
		got := streamReplicas(t, js, fleetStreams...)
		for _, s := range fleetStreams {
			if got[s] != "R3, 3 placed" {
				return fmt.Errorf("after README %q: %v, want R3, 3 placed each", fleetHeading, got)
			}
		}
		return nil
	})
	waitFactsReady(t, shell)
}

// startShellAgent starts c, the README's agent command cmd, and waits
// until the agent started; when the test ends it is stopped with SIGTERM
// and must exit cleanly.
func startShellAgent(t *testing.T, c *exec.Cmd, cmd string) {
	t.Helper()
	agent, stderr := startShell(t, c)
	natstest.Eventually(t, e2eTimeout, func() error {
		if !strings.Contains(stderr.String(), "agent started") {
			return fmt.Errorf("%s: not started yet:\n%s", cmd, stderr)
		}
		return nil
	})
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		if err := agent.Wait(); err != nil {
			t.Errorf("%s after SIGTERM: %v\n%s", cmd, err, stderr)
		}
	})
}
