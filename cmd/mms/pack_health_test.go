package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackChecksHealthStates: with --archives, pack refuses a health gate
// that names a state the archive's machine does not have, and signs one
// that names only its states.
func TestPackChecksHealthStates(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	newKeyPair(t, dir, "ops")
	archives := filepath.Join(dir, "archives")
	if err := os.Mkdir(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	out := mmsOK(t, "", "archive", "create", writeCLIMachine(t, cliMachine), "--out", filepath.Join(archives, "hello-0.1.0.tar.gz"),
		"--source", "https://repo.example.net/hello-0.1.0.tar.gz").stdout
	var entry map[string]any
	if err := json.Unmarshal([]byte(out), &entry); err != nil {
		t.Fatalf("archive create printed %q: %v", out, err)
	}
	write := func(health map[string]any) {
		e := map[string]any{}
		for k, v := range entry {
			e[k] = v
		}
		e["health"] = health
		e["rollout"] = map[string]any{"waves": []string{"1", "100%"}}
		b, err := json.Marshal([]any{e})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("machines.json", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(map[string]any{"states": []string{"don"}, "within": "30s", "fail_states": []string{"waiting"}})
	r := mms(t, "", "pack", "machines.json", "--key-file", "ops.key", "--archives", archives)
	if want := `machine[0] "hello": health: states: unknown state "don" (the machine's states: waiting, done)`; r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("pack with a typo in health.states = exit %d, stderr:\n%s\nwant %q", r.code, r.stderr, want)
	}
	write(map[string]any{"states": []string{"done"}, "within": "30s"})
	mmsOK(t, "", "pack", "machines.json", "--key-file", "ops.key", "--archives", archives)
	r = mms(t, "", "pack", "machines.json", "--key-file", "ops.key", "--archives", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "no archive with checksum") {
		t.Errorf("pack --archives without the archive = exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
