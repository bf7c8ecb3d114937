package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager/mmsmanager"
	"github.com/mms-io/mms/provision"
)

// bannerCommand finds the commands the agent's banner tells a person to
// run next.
var bannerCommand = regexp.MustCompile(`(?m)\bmms (?:archive|pack|events|status)\b.*$`)

// bannerCommands waits for the agent's banner and returns its commands by
// their first word after mms.
func bannerCommands(t *testing.T, errOut *syncbuf.Buffer) map[string]string {
	t.Helper()
	waitFor(t, errOut, "then follow it:", "mms status")
	cmds := map[string]string{}
	for _, c := range bannerCommand.FindAllString(errOut.String(), -1) {
		cmds[strings.Fields(c)[1]] = strings.TrimSpace(c)
	}
	return cmds
}

// runLine runs a command line the way a shell would run it without
// quoting: words split on spaces, stdin given, the leading "mms" dropped.
func runLine(t *testing.T, line, stdin string) result {
	t.Helper()
	words := strings.Fields(line)
	if len(words) == 0 || words[0] != "mms" {
		t.Fatalf("command %q does not start with mms", line)
	}
	return mms(t, stdin, words[1:]...)
}

// TestAgentBannerCommandsWork pastes what the agent's banner says to run
// next: archive a machine directory into NATS (DIR replaced by the
// directory), list the printed entry in machines.json, then the pack | put
// pipeline, the events follower and status, verbatim. It does so for an
// agent with the embedded server and for one that is a client of the NATS
// named by a `nats` CLI context (whose operator created the buckets).
func TestAgentBannerCommandsWork(t *testing.T) {
	tests := []struct {
		name string
		// nats prepares NATS and returns the agent's connection flags.
		nats func(t *testing.T) []string
	}{
		{"embedded server", func(*testing.T) []string { return []string{"--listen", "127.0.0.1:0"} }},
		{"nats context", func(t *testing.T) []string {
			srv := natstest.RunJetStream(t)
			js, err := jetstream.New(natstest.Connect(t, srv))
			if err != nil {
				t.Fatal(err)
			}
			createResource(t, js, provision.KindSpec, mmsmanager.DefaultBucket)
			createStatusBucket(t, js)
			config := t.TempDir()
			t.Setenv("XDG_CONFIG_HOME", config)
			if err := os.MkdirAll(filepath.Join(config, "nats", "context"), 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(config, "nats", "context"), "edge.json", `{"url": "`+srv.ClientURL()+`"}`)
			return []string{"--context", "edge"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			_, pub := newKeyPair(t, dir, "ops")
			const identity = "banner1"
			args := append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", filepath.Join(dir, "state"),
				"--identity", identity, "--status-interval", "200ms"}, tt.nats(t)...)
			_, errOut, stop := runUntil(t, args...)
			followBanner(t, dir, identity, errOut)
			if code := stop(); code != 0 {
				t.Errorf("agent exit code = %d, want 0; stderr:\n%s", code, errOut.String())
			}
		})
	}
}

// followBanner runs the commands of the banner in errOut, from dir, and
// checks that the node identity runs the machine they publish.
func followBanner(t *testing.T, dir, identity string, errOut *syncbuf.Buffer) {
	t.Helper()
	cmds := bannerCommands(t, errOut)
	for _, want := range []string{"archive", "pack", "events", "status"} {
		if cmds[want] == "" {
			t.Fatalf("banner has no mms %s command:\n%s", want, errOut.String())
		}
	}

	machine := filepath.Join(dir, "hello")
	if err := os.Mkdir(machine, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, machine, "machine.yaml", runnableMachineYAML("hello", "1.0.0"))
	if err := os.WriteFile(filepath.Join(machine, "check.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive := strings.Replace(cmds["archive"], " DIR ", " hello ", 1)
	r := runLine(t, archive, "")
	if r.code != 0 {
		t.Fatalf("%s: exit %d: %s", archive, r.code, r.stderr)
	}
	writeFile(t, dir, "machines.json", "["+r.stdout+"]")

	events, eventsErr, stopEvents := runUntil(t, strings.Fields(cmds["events"])[1:]...)
	waitFor(t, eventsErr, "following machine events")

	pack, put, ok := strings.Cut(cmds["pack"], " | ")
	if !ok {
		t.Fatalf("banner command %q is not a pipeline", cmds["pack"])
	}
	env := runLine(t, pack, "")
	if env.code != 0 {
		t.Fatalf("%s: exit %d: %s", pack, env.code, env.stderr)
	}
	if r := runLine(t, put, env.stdout); r.code != 0 {
		t.Fatalf("%s: exit %d: %s", put, r.code, r.stderr)
	}

	waitFor(t, events, identity+" hello transition checked idle -> ready")
	if code := stopEvents(); code != 0 {
		t.Errorf("%s exit code = %d, want 0", cmds["events"], code)
	}
	natstest.Eventually(t, e2eTimeout, func() error {
		r := runLine(t, cmds["status"], "")
		if r.code != 0 {
			return fmt.Errorf("%s: exit %d: %s", cmds["status"], r.code, r.stderr)
		}
		if !regexp.MustCompile(`(?m)^` + identity + ` .*\(.*\bready 1\b.*\)`).MatchString(r.stdout) {
			return fmt.Errorf("%s printed %q, want %s running hello in ready", cmds["status"], r.stdout, identity)
		}
		return nil
	})
}
