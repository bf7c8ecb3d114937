package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/watchers"
)

// The test binary registers "mmsclitest", a watcher that reports its
// properties' message once, so the CLI can run a machine without the
// built-in watcher packages.
func init() {
	watchers.Register(watchers.Info{Type: "mmsclitest", Version: "v1", New: func() watchers.Watcher { return new(cliTestWatcher) }})
}

type cliTestWatcher struct {
	Message string `json:"message"`
	done    bool
}

func (w *cliTestWatcher) Validate() error {
	if w.Message == "" {
		return errors.New("message is required")
	}
	return nil
}

func (w *cliTestWatcher) Check(context.Context) (watchers.Result, error) {
	if w.done {
		return watchers.Result{}, nil
	}
	w.done = true
	return watchers.Result{Outcome: watchers.Success, State: map[string]string{"message": w.Message}}, nil
}

// greeterMachine is a machine.yaml whose one mmsclitest watcher reports
// message and moves it from waiting to done.
func greeterMachine(name, version, message string) string {
	return fmt.Sprintf(`name: %s
version: %s
initial_state: waiting
transitions:
  - name: greeted
    from: [waiting]
    destination: done
watchers:
  - name: greeter
    type: mmsclitest
    state_match: [waiting]
    success_transition: greeted
    properties:
      message: %s
`, name, version, message)
}

var cliMachine = greeterMachine("hello", "0.1.0", "hi there")

func writeCLIMachine(t *testing.T, yaml string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "machine.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMachineValidate(t *testing.T) {
	good := writeCLIMachine(t, cliMachine)
	bad := writeCLIMachine(t, strings.Replace(strings.Replace(cliMachine, "message: hi there", "mesage: hi", 1), "state_match: [waiting]", "state_match: [nowhere]", 1))
	typo := writeCLIMachine(t, strings.Replace(cliMachine, "initial_state", "initial_stat", 1))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  []string
	}{
		{"directory", []string{"machine", "validate", good}, 0, "ok: hello 0.1.0 (1 watcher)\n", nil},
		{"file", []string{"machine", "validate", filepath.Join(good, "machine.yaml")}, 0, "ok: hello 0.1.0 (1 watcher)\n", nil},
		{"every problem", []string{"machine", "validate", bad}, 1, "", []string{
			`line 9: watcher "greeter" (mmsclitest): state_match: unknown state "nowhere"`,
			`line 14: watcher "greeter" (mmsclitest): properties: unknown field "mesage"; did you mean "message"?`,
			"is not a valid machine",
		}},
		{"unknown key", []string{"machine", "validate", typo}, 1, "", []string{"line 3: field initial_stat not found in machine"}},
		{"missing", []string{"machine", "validate", filepath.Join(t.TempDir(), "nope")}, 1, "", []string{"no such file"}},
		{"no args", []string{"machine", "validate"}, 1, "", []string{"accepts 1 arg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(t.Context(), tt.args, strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode {
				t.Errorf("run(%v) = %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, errOut.String())
			}
			if out.String() != tt.wantOut {
				t.Errorf("run(%v) stdout = %q, want %q", tt.args, out.String(), tt.wantOut)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("run(%v) stderr = %q, want it to contain %q", tt.args, errOut.String(), w)
				}
			}
		})
	}
}

// runUntil runs the CLI in the background until stop is called and
// returns its output buffers.
func runUntil(t *testing.T, args ...string) (out, errOut *syncbuf.Buffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut = &syncbuf.Buffer{}, &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, errOut) }()
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() {
			cancel()
			code = <-done
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

func waitFor(t *testing.T, buf *syncbuf.Buffer, want ...string) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		s := buf.String()
		for _, w := range want {
			if !strings.Contains(s, w) {
				return errors.New("output lacks " + w + ":\n" + s)
			}
		}
		return nil
	})
}

func TestMachineRun(t *testing.T) {
	dir := writeCLIMachine(t, cliMachine)
	facts := filepath.Join(t.TempDir(), "facts.yaml")
	if err := os.WriteFile(facts, []byte("role: test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	out, errOut, stop := runUntil(t, "machine", "run", dir, "--identity", "laptop", "--facts", facts, "--data-dir", dataDir)
	waitFor(t, out, "laptop hello transition greeted waiting -> done", "laptop hello mmsclitest greeter success")
	if code := stop(); code != 0 {
		t.Errorf("machine run exit code = %d, want 0; stderr:\n%s", code, errOut.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != 2 {
		t.Errorf("machine run printed %d lines, want 2:\n%s", lines, out.String())
	}
	// A terminal shows stdout and stderr together: each event once.
	if strings.Contains(errOut.String(), "greeted") || strings.Contains(errOut.String(), "machine event") {
		t.Errorf("machine run also logged the events on stderr:\n%s", errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "hello")); err != nil {
		t.Errorf("data directory for hello not created under --data-dir: %v", err)
	}
}

func TestMachineRunJSON(t *testing.T) {
	dir := writeCLIMachine(t, cliMachine)
	out, _, stop := runUntil(t, "machine", "run", dir, "--identity", "laptop", "--json")
	waitFor(t, out, `"type":"io.choria.machine.watcher.mmsclitest.v1.state"`)
	stop()
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		ev := event.New()
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Errorf("line %q is not a CloudEvent: %v", line, err)
		}
	}
}

func TestMachineRunErrors(t *testing.T) {
	dir := writeCLIMachine(t, strings.Replace(cliMachine, "mmsclitest", "nosuchtype", 1))
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"machine", "run", dir}, strings.NewReader(""), &out, &errOut); code != 1 {
		t.Errorf("machine run with an unknown type = %d, want 1", code)
	}
	if !strings.Contains(errOut.String(), `unknown watcher type "nosuchtype"`) {
		t.Errorf("stderr = %q, want the unknown type named", errOut.String())
	}
	good := writeCLIMachine(t, cliMachine)
	errOut.Reset()
	if code := run(t.Context(), []string{"machine", "run", good, "--facts", filepath.Join(t.TempDir(), "none")}, strings.NewReader(""), &out, &errOut); code != 1 {
		t.Errorf("machine run with a missing facts file = %d, want 1", code)
	}
}

// `mms machine run` prints an event as `mms events` does: with why (here
// a failed exec's exit code and stderr), escaped.
func TestMachineRunEventLine(t *testing.T) {
	msg := choriaEvent(t, "io.choria.machine.watcher.exec.v1.state", "laptop", map[string]any{
		"machine": "hello", "type": "exec", "name": "check", "outcome": "failure", "exit_code": 2, "stderr": "refused\x1b[2J\n",
	})
	ev := event.New()
	if err := json.Unmarshal(msg, &ev); err != nil {
		t.Fatal(err)
	}
	line, err := formatEvent(ev, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "laptop hello exec check failure: exit 2: " + termtext.Escape("refused\x1b[2J")
	if _, rest, _ := strings.Cut(line, " "); rest != want {
		t.Errorf("formatEvent() = %q, want %q after the time", rest, want)
	}
}
