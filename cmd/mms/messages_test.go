package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewcomerMessages: each mistake a newcomer made in a first run gets a
// message that says what to do (issue 19).
func TestNewcomerMessages(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	newKeyPair(t, dir, "ops")
	if err := os.WriteFile("machines.json", []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("machines.yaml", []byte("- name: web\n  source: https://h/w.tgz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := mmsOK(t, "", "pack", "machines.json", "--key-file", "ops.key").stdout
	if err := os.WriteFile("spec.json", []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	machineDir := writeCLIMachine(t, cliMachine)
	private := strings.TrimSpace(readFile(t, "ops.key"))
	const privateGiven = "parsing public key: that is a private key, not a public key: give the public key ('mms keys --out NAME' writes it to NAME.pub, beside NAME.key); " +
		"a command line is visible to every user of this machine (and kept in shell history): make a new pair with 'mms keys --out NAME' if others use it\n"
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"verify without a key", "", []string{"verify", "spec.json"},
			"missing KEY: give the public key(s) that should have signed spec.json (a file or 64 hex characters), e.g. mms verify spec.json ops.pub"},
		{"verify without anything", "", []string{"verify"}, "missing SPEC and KEY"},
		{"a public key for --key-file", "", []string{"pack", "machines.json", "--key-file", "ops.pub"},
			"ops.pub holds a public key: --key-file wants the private key that signs"},
		{"an empty --public-key", "", []string{"agent", "--public-key", "", "--state-dir", filepath.Join(dir, "state")},
			`--public-key #1: parsing public key: key is empty (did a substitution such as --public-key "$(cat ops.pub)" fail? check that the file exists)`},
		{"the private key for --public-key", "", []string{"agent", "--public-key", private + "\n", "--state-dir", filepath.Join(dir, "state")},
			"mms: --public-key #1: " + privateGiven},
		{"the private key for verify's KEY", "", []string{"verify", "spec.json", private}, "mms: " + privateGiven},
		{"put before pack (JSON)", "", []string{"put", "machines.json", "--server", "nats://127.0.0.1:1"},
			"this is a machines list, not a signed spec: pack it first, e.g. mms pack machines.json --key-file ops.key | mms put"},
		{"put before pack (YAML, stdin)", "- name: web\n", []string{"put", "--server", "nats://127.0.0.1:1"},
			"this is a machines list, not a signed spec: pack it first"},
		{"archive into a missing directory", "", []string{"archive", "create", machineDir, "--out", filepath.Join(dir, "nope", "hello.tgz")},
			"directory " + filepath.Join(dir, "nope") + " does not exist: create it or give another --out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mms(t, tt.stdin, tt.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("mms %s = exit %d, stderr:\n%s\nwant it to contain\n%s", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
			}
			if strings.Contains(r.stderr, private[:16]) {
				t.Errorf("mms %s printed the private key:\n%s", strings.Join(tt.args, " "), r.stderr)
			}
			if strings.Contains(r.stderr, "chmod") || strings.Contains(r.stderr, ".tmp-") {
				t.Errorf("mms %s points at the wrong problem:\n%s", strings.Join(tt.args, " "), r.stderr)
			}
		})
	}
}
