package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
)

// TestNATSFlagsHelp checks that every command talking to NATS offers the
// shared connection flags, each with a readable placeholder.
func TestNATSFlagsHelp(t *testing.T) {
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+--server string\s`),
		regexp.MustCompile(`(?m)^\s+--context NAME\s+start from the nats CLI context NAME`),
		regexp.MustCompile(`(?m)^\s+--creds string\s`),
		regexp.MustCompile(`(?m)^\s+--tls-ca string\s`),
		regexp.MustCompile(`(?m)^\s+--timeout duration\s`),
	}
	for _, cmd := range [][]string{{"agent"}, {"archive", "create"}, {"events"}, {"governor", "list"}, {"put"}, {"status"}} {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			help := mmsOK(t, "", append(cmd, "--help")...).stdout
			for _, re := range want {
				if !re.MatchString(help) {
					t.Errorf("mms %s --help lacks %s:\n%s", strings.Join(cmd, " "), re, help)
				}
			}
		})
	}
}

// isolateNATSLookup clears every place an operator command looks for NATS
// (environment, nats CLI configuration, default state directory), so that
// a test sets only the ones it means to.
func isolateNATSLookup(t *testing.T) {
	t.Helper()
	t.Setenv(natsbox.EnvURL, "")
	t.Setenv(natsbox.EnvContext, "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv(stateDirEnv, filepath.Join(t.TempDir(), "state"))
}

// selectContext writes the nats CLI context name with url and selects it
// as `nats context select` does.
func selectContext(t *testing.T, name, url string) {
	t.Helper()
	dir := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats")
	if err := os.MkdirAll(filepath.Join(dir, "context"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "context"), name+".json", `{"url": "`+url+`"}`)
	writeFile(t, dir, "context.txt", name+"\n")
}

// TestStatusFindsNATS runs `mms status` without connection flags: it finds
// NATS as the nats CLI does. Each case has a decoy further down the order,
// a server without the status bucket, so that using it would fail.
func TestStatusFindsNATS(t *testing.T) {
	tests := []struct {
		name string
		// setup points the lookup at url, and lower sources at decoy.
		setup func(t *testing.T, url, decoy string)
	}{
		{"NATS_URL over the selected context", func(t *testing.T, url, decoy string) {
			t.Setenv(natsbox.EnvURL, url)
			selectContext(t, "decoy", decoy)
		}},
		{"selected nats context", func(t *testing.T, url, _ string) {
			selectContext(t, "edge", url)
		}},
		{"NATS_CONTEXT over NATS_URL", func(t *testing.T, url, decoy string) {
			selectContext(t, "edge", url)
			writeFile(t, filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats"), "context.txt", "")
			t.Setenv(natsbox.EnvContext, "edge")
			t.Setenv(natsbox.EnvURL, decoy)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateNATSLookup(t)
			url := statusFleet(t, statusDocument("found-me", 17, time.Now()))
			decoy := natstest.RunJetStream(t).ClientURL()
			tt.setup(t, url, decoy)
			r := mms(t, "", "status")
			if r.code != 0 || !strings.Contains(r.stdout, "found-me") {
				t.Errorf("mms status = exit %d\nstdout: %s\nstderr: %s\nwant the node found-me", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestCommandsFindLocalAgent: with an agent on the default state
// directory, `mms status` needs no flag; with another one, --state-dir.
func TestCommandsFindLocalAgent(t *testing.T) {
	isolateNATSLookup(t)
	dir := t.TempDir()
	_, pub := newKeyPair(t, dir, "ops")
	other := filepath.Join(dir, "other")
	for _, tt := range []struct {
		name      string
		agentArgs []string
		cmdArgs   []string
	}{
		{"default state dir", nil, nil},
		{"--state-dir", []string{"--state-dir", other}, []string{"--state-dir", other}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--listen", "127.0.0.1:0",
				"--identity", "local1", "--status-interval", "200ms"}, tt.agentArgs...)
			_, errOut, stop := runUntil(t, args...)
			waitFor(t, errOut, "agent started")
			natstest.Eventually(t, e2eTimeout, func() error {
				r := mms(t, "", append([]string{"status"}, tt.cmdArgs...)...)
				if r.code != 0 || !strings.Contains(r.stdout, "local1") {
					return fmt.Errorf("mms status %v = exit %d\nstdout: %s\nstderr: %s", tt.cmdArgs, r.code, r.stdout, r.stderr)
				}
				return nil
			})
			if code := stop(); code != 0 {
				t.Errorf("agent exit code = %d; stderr:\n%s", code, errOut)
			}
		})
	}
}

// TestConnectFailureSaysWhatItTried: a command that cannot connect names
// the server, where it came from, every place looked at before, and what
// to do.
func TestConnectFailureSaysWhatItTried(t *testing.T) {
	isolateNATSLookup(t)
	dead, _ := natstest.DeadURL(t)
	t.Setenv(natsbox.EnvURL, dead)
	r := mms(t, "", "status", "--timeout", "2s")
	want := []string{
		"connect to nats at " + dead,
		"looked for NATS in this order: --server: not given; --context: not given; $NATS_CONTEXT: not set; --state-dir: not given; $NATS_URL (" + dead + "): used",
		"is mms agent running? give --server or --context",
	}
	if r.code != 1 {
		t.Errorf("mms status with a dead NATS_URL = exit %d, want 1", r.code)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr = %q, want it to contain %q", r.stderr, w)
		}
	}

	// Nothing configured and no local agent: no server is guessed (it
	// tried a bare nats://127.0.0.1:4222, which the README never names).
	t.Setenv(natsbox.EnvURL, "")
	r = mms(t, "", "status", "--timeout", "2s")
	stateFile := filepath.Join(os.Getenv(stateDirEnv), natsbox.LocalContextFile)
	selection, err := natsbox.SelectionPath()
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"mms: no NATS server to use: looked for NATS in this order: --server: not given; --context: not given; $NATS_CONTEXT: not set; --state-dir: not given; $NATS_URL: not set; the selected nats context: none in " + selection + "; the local mms agent: no " + stateFile,
		`start an agent on this machine (mms agent --public-key "$(cat ops.pub)"; its commands then find it), or say where NATS is: --server URL (or $NATS_URL), --context NAME, --state-dir DIR`,
	}
	if r.code != 1 || r.stderr != strings.Join(want, "\n")+"\n" {
		t.Errorf("mms status with nothing configured = exit %d, stderr:\n%s\nwant 1 and\n%s", r.code, r.stderr, strings.Join(want, "\n"))
	}
}
