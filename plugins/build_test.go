package plugins_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/repotest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/plugins"
)

// TestBuildCustomBinary pastes the steps of docs/build-your-own.md, verbatim,
// into sh in an empty directory: it clones this repository (its working
// tree as it is on disk; the only change to the text is the URL of the
// clone), lists the example heartbeat watcher and beacon machine
// (examples/heartbeat, a module of their own) in user_plugins.yaml,
// requires their module, runs go generate and go mod tidy and builds mms
// with a compiled-in key. It then checks what `mms plugins` printed, that
// `mms plugins --json` shows the plugins, that the binary validates a
// machine using the heartbeat type, and that its `mms agent`, given no key
// flag, trusts the key compiled in. README's "Build your own node binary"
// block must hold the same commands.
//
// The go command runs with the environment's module settings (GOPROXY,
// GOMODCACHE, GOFLAGS but its -mod flag, so the default -mod=readonly as a
// newcomer has it), so it downloads what the module cache lacks, and it
// shares the build cache.
func TestBuildCustomBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds an mms binary; skipped in -short mode")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to build a binary: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const cloneLine = "git clone https://github.com/mms-io/mms && cd mms\n"
	docs := repotest.Block(t, readFile(t, filepath.Join(root, "docs", "build-your-own.md")), "### Steps")
	if !strings.HasPrefix(docs, cloneLine) {
		t.Fatalf("docs/build-your-own.md's steps do not start with %q; this test clones this checkout in its place:\n%s", cloneLine, docs)
	}
	readme := repotest.Commands(t, repotest.Block(t, readFile(t, filepath.Join(root, "README.md")), "## Build your own node binary"))
	steps := repotest.Commands(t, docs)
	if diff := cmp.Diff(steps[1:], withoutComments(readme)); diff != "" {
		t.Errorf("README's \"Build your own node binary\" commands differ from docs/build-your-own.md's steps after the clone (-docs +README):\n%s", diff)
	}

	script := strings.Replace(docs, "https://github.com/mms-io/mms", repotest.Snapshot(t, root), 1)
	work := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "sh", "-eu", "-c", script)
	cmd.Dir = work
	cmd.Env = append(repotest.Env(), "GOFLAGS="+goFlags(""), "GOTOOLCHAIN=local", "GOWORK=off")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the steps of docs/build-your-own.md failed: %v\n%s", err, out)
	}
	t.Logf("the steps took %s", time.Since(start).Round(time.Second))
	for _, want := range []string{
		"\n  beacon      example.com/mms-heartbeat/beacon\n",
		"\n  heartbeat   example.com/mms-heartbeat\n",
		"\n  heartbeat   v1       io.choria.machine.watcher.heartbeat.v1.state   heartbeat\n",
		"\nCompiled-in machines:\n  beacon\n  mms_manager\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("./mms plugins printed no %q:\n%s", want, out)
		}
	}
	dir := filepath.Join(work, "mms")
	// The property reference now documents the added watcher type too.
	if md := readFile(t, filepath.Join(dir, "docs", "watchers.md")); !strings.Contains(md, "\n## heartbeat\n") {
		t.Errorf("docs/watchers.md after go generate has no heartbeat section")
	}
	pubHex := strings.TrimSpace(readFile(t, filepath.Join(dir, "ops.pub")))
	mms := filepath.Join(dir, "mms")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run(mms, "version"); !strings.HasPrefix(out, "mms 1.0.0-acme\n") {
		t.Errorf("mms version = %q, want the version the steps stamp, 1.0.0-acme", out)
	}

	var got builtView
	out = []byte(run(mms, "plugins", "--json"))
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("mms plugins --json: %v\n%s", err, out)
	}
	for _, want := range []plugins.Plugin{
		{Name: "heartbeat", ImportPath: "example.com/mms-heartbeat"},
		{Name: "beacon", ImportPath: "example.com/mms-heartbeat/beacon"},
		{Name: "timer", ImportPath: "github.com/mms-io/mms/watchers/timer"},
	} {
		if !slices.Contains(got.Plugins, want) {
			t.Errorf("mms plugins --json plugins = %+v, want it to contain %+v", got.Plugins, want)
		}
	}
	for _, want := range []builtWatcher{
		{Type: "heartbeat", Version: "v1", EventType: "io.choria.machine.watcher.heartbeat.v1.state", Package: "example.com/mms-heartbeat", Plugin: "heartbeat"},
		{Type: "timer", Version: "v1", EventType: "io.choria.machine.watcher.timer.v1.state", Package: "github.com/mms-io/mms/watchers/timer", Plugin: "timer"},
	} {
		if !slices.Contains(got.Watchers, want) {
			t.Errorf("mms plugins --json watchers = %+v, want it to contain %+v", got.Watchers, want)
		}
	}
	for _, want := range []builtMachine{{Name: "beacon"}, {Name: "mms_manager"}} {
		if !slices.Contains(got.Machines, want) {
			t.Errorf("mms plugins --json machines = %+v, want it to contain %+v", got.Machines, want)
		}
	}
	if len(got.PublicKeys) != 1 || got.PublicKeys[0].Key != pubHex || len(got.PublicKeys[0].KeyID) == 0 {
		t.Errorf("mms plugins --json public_keys = %+v, want the key compiled in with -ldflags, %s", got.PublicKeys, pubHex)
	}

	machine := filepath.Join(dir, "pulse")
	if err := os.Mkdir(machine, 0o755); err != nil {
		t.Fatal(err)
	}
	def := `name: pulse
version: 0.1.0
initial_state: "ON"
transitions:
  - name: "off"
    from: ["ON"]
    destination: "OFF"
watchers:
  - name: beat
    type: heartbeat
    state_match: ["ON"]
    interval: 10s
    properties:
      message: hi
`
	if err := os.WriteFile(filepath.Join(machine, "machine.yaml"), []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, want := run(mms, "machine", "validate", machine), "ok: pulse 0.1.0 (1 watcher)\n"; out != want {
		t.Errorf("mms machine validate = %q, want %q", out, want)
	}

	checkAgentTrustsCompiledKey(t, mms, pubHex)
}

// checkAgentTrustsCompiledKey runs `mms agent` of the binary mms without
// any key flag: it must start trusting the compiled-in key pubHex, and exit
// 0 on SIGTERM.
func checkAgentTrustsCompiledKey(t *testing.T, mms, pubHex string) {
	t.Helper()
	pub, err := packer.ParsePublicKey(pubHex)
	if err != nil {
		t.Fatal(err)
	}
	keyID := packer.KeyID(pub)
	cmd := exec.CommandContext(t.Context(), mms, "agent", "--listen", "127.0.0.1:0", "--state-dir", filepath.Join(t.TempDir(), "state"), "--identity", "built")
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mms agent: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mms agent without a key flag exited (%v) before it started:\n%s", err, stderr)
		default:
		}
		for line := range strings.Lines(stderr.String()) {
			if strings.Contains(line, "agent started") {
				if !strings.Contains(line, "trusted_key_ids=["+keyID+"]") {
					return fmt.Errorf("agent started with other trusted keys than the compiled-in %s: %s", keyID, line)
				}
				return nil
			}
		}
		return fmt.Errorf("no \"agent started\" line yet:\n%s", stderr)
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal mms agent: %v", err)
	}
	if err := <-exited; err != nil {
		t.Errorf("mms agent after SIGTERM: %v, want exit 0; stderr:\n%s", err, stderr)
	}
}

// TestExampleModule vets and tests the example plugin module in
// examples/heartbeat, which `go test ./...` of this module does not reach
// (a directory with its own go.mod is another module). It uses the module's
// go.mod and go.sum as they are, so a stale go.sum fails here.
func TestExampleModule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command on another module; skipped in -short mode")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to test the examples: %v", err)
	}
	for _, args := range [][]string{{"vet", "./..."}, {"test", "-count=1", "./..."}} {
		cmd := exec.CommandContext(t.Context(), goCmd, args...)
		cmd.Dir = filepath.Join("..", "examples", "heartbeat")
		cmd.Env = append(os.Environ(), "GOFLAGS="+goFlags("-mod=readonly"), "GOTOOLCHAIN=local", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go %s in examples/heartbeat: %v\n%s\n(a missing go.sum entry means this module's dependencies changed: run `cd examples/heartbeat && go mod tidy`)", strings.Join(args, " "), err, out)
		}
	}
}

// withoutComments drops a trailing "  # comment" from each single-line
// command.
func withoutComments(cmds []string) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		if !strings.Contains(c, "\n") {
			c, _, _ = strings.Cut(c, "  #")
			c = strings.TrimSpace(c)
		}
		out[i] = c
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goFlags returns the environment's GOFLAGS with mode, the -mod flag a
// test needs (none when empty), in place of any -mod flag it had: the other
// flags (such as -modcacherw, which lets CI delete a temporary module
// cache) still apply.
func goFlags(mode string) string {
	var flags []string
	if mode != "" {
		flags = append(flags, mode)
	}
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if !strings.HasPrefix(f, "-mod=") {
			flags = append(flags, f)
		}
	}
	return strings.Join(flags, " ")
}

// builtView is the --json shape of `mms plugins`.
type builtView struct {
	Plugins    []plugins.Plugin `json:"plugins"`
	Watchers   []builtWatcher   `json:"watchers"`
	Machines   []builtMachine   `json:"machines"`
	PublicKeys []struct {
		Key   string `json:"key"`
		KeyID string `json:"key_id"`
	} `json:"public_keys"`
}

type builtWatcher struct {
	Type      string `json:"type"`
	Version   string `json:"version"`
	EventType string `json:"event_type"`
	Package   string `json:"package"`
	Plugin    string `json:"plugin"`
}

type builtMachine struct {
	Name string `json:"name"`
}
