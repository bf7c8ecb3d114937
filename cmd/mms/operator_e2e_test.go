package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
)

// TestOperatorCommandsSayWhichServer: archive create --upload, put and
// status name the server they used, with its name, and how they found it
// when no --server named it (a put to the wrong NATS showed no clue).
func TestOperatorCommandsSayWhichServer(t *testing.T) {
	isolateNATSLookup(t)
	opts := natstest.Options(t.TempDir())
	opts.ServerName = "hub-1"
	url := natstest.Run(t, opts).ClientURL()
	dir := t.TempDir()
	t.Chdir(dir)
	key, _ := newKeyPair(t, dir, "ops")
	machine := machineDir(t, archiveMachineYAML("web", "1.0.0"))
	server := url + " (server hub-1)"

	r := mmsOK(t, "", "archive", "create", machine, "--out", filepath.Join(dir, "web.tgz"), "--upload", "nats://ARCHIVES", "--server", url)
	if want := "uploaded nats://ARCHIVES/web-1.0.0.tar.gz to " + server + "\n"; !strings.HasSuffix(r.stderr, want) {
		t.Errorf("archive create --upload stderr = %q, want it to end with %q", r.stderr, want)
	}
	writeFile(t, dir, "machines.json", "["+r.stdout+"]")
	env := mmsOK(t, "", "pack", "machines.json", "--key-file", key, "--serial", "5").stdout

	t.Setenv(natsbox.EnvURL, url)
	found := server + ", found through $NATS_URL (" + url + ")"
	r = mmsOK(t, env, "put", "--create")
	if re := regexp.MustCompile(`^put MACHINES/machines revision 1: v2 spec serial 5, 1 machine, at \S+, on ` + regexp.QuoteMeta(found) + "\n$"); !re.MatchString(r.stdout) {
		t.Errorf("put stdout = %q, want it to match %s", r.stdout, re)
	}
	r = mmsOK(t, "", "status", "--create")
	if want := "NATS: " + found + "\nspec MACHINES/machines (revision 1): v2 serial 5, 1 machine (signature not verified here)\n"; !strings.HasPrefix(r.stdout, want) {
		t.Errorf("status stdout = %q, want it to start with %q", r.stdout, want)
	}
}

// TestLocalAgentHints: the hints of the commands that use the local
// agent's embedded server work there. A --revision conflict suggests the
// mms show command with the flags that reached the server (it suggested
// --server URL, which the embedded server refuses without credentials);
// credentials the server refuses are named as such (not "is mms agent
// running?"); an explicit $MMS_STATE_DIR wins over $NATS_URL as
// --state-dir does.
func TestLocalAgentHints(t *testing.T) {
	isolateNATSLookup(t)
	f := newOperatorFixture(t)
	a := startTestAgent(t, f.pub, f.state)
	writeMachines(t, f.dir, f.repo.publish(t, "web", "1.0.0"))
	local := []string{"--state-dir", f.state}
	serial := packPut(t, f.sign, local)

	writeMachines(t, f.dir, f.repo.publish(t, "web", "2.0.0"))
	env := mmsOK(t, "", append([]string{"pack", "machines.json", "--serial", fmt.Sprint(serial + 1)}, f.sign...)...).stdout
	r := mms(t, env, append([]string{"put", "--revision", "7"}, local...)...)
	want := fmt.Sprintf("mms: MACHINES/machines is at revision 1, not 7 as --revision expects: review the current spec with 'mms show --state-dir %s' first\n", f.state)
	if r.code != 1 || r.stderr != want {
		t.Fatalf("put --revision 7 = exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
	suggested := strings.Fields(strings.TrimPrefix(regexp.MustCompile(`'(mms show[^']*)'`).FindStringSubmatch(r.stderr)[1], "mms "))
	if r := mms(t, "", suggested...); r.code != 0 || !strings.Contains(r.stdout, "revision 1") {
		t.Errorf("the suggested mms %s = exit %d, stdout %q, stderr %q; want the current spec", strings.Join(suggested, " "), r.code, r.stdout, r.stderr)
	}

	// Another agent's login, as if the agent had been set up again.
	other, err := natsbox.LoadLocalAuth(t.TempDir(), natsbox.LocalHosts("127.0.0.1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r = mms(t, "", "status", "--server", a.login.url, "--nkey", other.SeedFile, "--tls-ca", a.login.ca, "--timeout", "2s")
	if !strings.Contains(r.stderr, "the server refused the credentials: give the ones it expects (--creds FILE, --nkey FILE, or a --context that has them)") ||
		strings.Contains(r.stderr, "is mms agent running?") {
		t.Errorf("status with credentials the server refuses = exit %d, stderr:\n%s", r.code, r.stderr)
	}

	// $MMS_STATE_DIR names the agent, over $NATS_URL.
	decoy := natstest.RunJetStream(t).ClientURL()
	t.Setenv(natsbox.EnvURL, decoy)
	t.Setenv(stateDirEnv, f.state)
	r = mmsOK(t, "", "status")
	if want := "NATS: " + a.login.url + ", found through the mms agent of $" + stateDirEnv + " (" + filepath.Join(f.state, natsbox.LocalContextFile) + ")\n"; !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "\nweb1 ") {
		t.Errorf("status with $MMS_STATE_DIR and $NATS_URL set: stdout %q, want it from the agent (%q)", r.stdout, want)
	}
}

// TestClientAgentHints: an agent that uses an external NATS says so to the
// commands pointed at its state directory (they said "nats context not
// found"), and its banner prints the commands with placeholders for the
// operator's credentials, which work once filled in (it printed them
// without any, and the server refused them).
func TestClientAgentHints(t *testing.T) {
	isolateNATSLookup(t)
	dir := t.TempDir()
	t.Chdir(dir)
	fs := startFleetServer(t, dir, "web1")
	setUpFleet(t, fs, nil)
	_, pub := newKeyPair(t, dir, "ops")
	state := filepath.Join(dir, "state")
	args := append([]string{"agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--identity", "web1", "--status-interval", "200ms"}, fs.as(nodeUser("web1"))...)
	_, errOut, stop := runUntil(t, args...)
	waitFor(t, errOut, "agent started", "credentials:     OPERATOR.nk stand for the operator's own (this node's may not publish specs; 'mms nats-config' writes operator.nk)\n")
	if strings.Contains(bannerCommands(t, errOut)["pack"], fs.seed(nodeUser("web1"))) {
		t.Errorf("the banner offers the node's own credentials to publish:\n%s", errOut)
	}

	r := mms(t, "", "status", "--state-dir", state)
	want := fmt.Sprintf("mms: the mms agent with state %s uses an external NATS (%s), not an embedded server: give that server with --server (or a --context) and your own credentials (--creds, --nkey): the agent's are a node's, not an operator's\n", state, fs.url)
	if r.code != 1 || r.stderr != want {
		t.Errorf("status --state-dir of a client agent = exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
	missing := filepath.Join(dir, "nobody")
	r = mms(t, "", "status", "--state-dir", missing)
	if want := "mms: no mms agent with an embedded NATS server keeps its state in " + missing; r.code != 1 || !strings.HasPrefix(r.stderr, want) {
		t.Errorf("status --state-dir of no agent = exit %d, stderr %q; want 1 and %q…", r.code, r.stderr, want)
	}

	// The banner's commands, with the operator's seed for the placeholder.
	operator := func(line string) string { return strings.ReplaceAll(line, "OPERATOR.nk", fs.seed("operator")) }
	for i, line := range []string{bannerCommands(t, errOut)["status"], bannerCommands(t, errOut)["events"]} {
		if !strings.Contains(line, " --nkey OPERATOR.nk") {
			t.Errorf("banner command %q has no placeholder for the operator's credentials", line)
		}
		if i == 0 {
			// The banner can come before the agent's first status write.
			natstest.Eventually(t, 10*time.Second, func() error {
				if r := runLine(t, operator(line), ""); r.code != 0 || !strings.Contains(r.stdout, "\nweb1 ") {
					return fmt.Errorf("%s = exit %d, stdout %q, stderr %q", line, r.code, r.stdout, r.stderr)
				}
				return nil
			})
		}
	}
	if code := stop(); code != 0 {
		t.Errorf("agent exit code = %d; stderr:\n%s", code, errOut)
	}
}
