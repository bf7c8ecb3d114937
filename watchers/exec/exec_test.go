package execwatcher

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func props(t *testing.T, v map[string]any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckExitStatus(t *testing.T) {
	tests := []struct {
		name    string
		command string
		outcome watchers.Outcome
		state   State
	}{
		{name: "exit 0", command: "true", outcome: watchers.Success,
			state: State{Command: "true", PreviousOutcome: "success", ExitCode: 0}},
		{name: "exit 3 with stderr", command: `sh -c 'echo oops >&2; exit 3'`, outcome: watchers.Failure,
			state: State{Command: `sh -c 'echo oops >&2; exit 3'`, PreviousOutcome: "error", ExitCode: 3, Stderr: "oops\n"}},
		{name: "killed by a signal", command: `sh -c 'kill -TERM $$'`, outcome: watchers.Failure,
			state: State{Command: `sh -c 'kill -TERM $$'`, PreviousOutcome: "error", ExitCode: -1}},
		{name: "success drops stderr", command: `sh -c 'echo noise >&2'`, outcome: watchers.Success,
			state: State{Command: `sh -c 'echo noise >&2'`, PreviousOutcome: "success", ExitCode: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := watchertest.Build(t, "exec", props(t, map[string]any{"command": tt.command}))
			res, err := w.Check(t.Context())
			if err != nil {
				t.Fatalf("Check() err = %v", err)
			}
			if res.Outcome != tt.outcome {
				t.Errorf("Check() outcome = %v, want %v", res.Outcome, tt.outcome)
			}
			st := res.State.(State)
			if st.PreviousRunTime <= 0 {
				t.Errorf("previous_run_time = %v, want > 0", st.PreviousRunTime)
			}
			st.PreviousRunTime = 0
			if diff := cmp.Diff(tt.state, st); diff != "" {
				t.Errorf("Check() state (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStderrTailIsCapped(t *testing.T) {
	w := watchertest.Build(t, "exec", `{"command":"sh -c 'head -c 5000 /dev/zero | tr \"\\\\0\" a >&2; echo END >&2; exit 1'"}`)
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := res.State.(State).Stderr
	if len(got) != StderrTail || !strings.HasSuffix(got, "aaaEND\n") {
		t.Errorf("stderr tail = %d bytes ending %q, want %d bytes ending %q", len(got), got[max(len(got)-8, 0):], StderrTail, "aaaEND\n")
	}
}

func TestRelativeCommand(t *testing.T) {
	tests := []struct {
		name    string
		command string
	}{
		{name: "bare name in machine dir", command: "check.sh arg"},
		{name: "dot slash", command: "./check.sh arg"},
		{name: "subdirectory", command: "bin/check.sh arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			writeScript(t, d.Dir, "check.sh", `pwd > ran; echo "$0 $1" >> ran`)
			writeScript(t, d.Dir, "bin/check.sh", `pwd > ran; echo "$0 $1" >> ran`)
			w := watchertest.BuildWith(t, d, "exec", props(t, map[string]any{"command": tt.command}))
			res, err := w.Check(t.Context())
			if err != nil || res.Outcome != watchers.Success {
				t.Fatalf("Check() = %v, %v; want success", res.Outcome, err)
			}
			b, err := os.ReadFile(filepath.Join(d.Dir, "ran"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			dir, _ := filepath.EvalSymlinks(d.Dir)
			if got, _ := filepath.EvalSymlinks(lines[0]); got != dir {
				t.Errorf("working directory = %q, want %q", lines[0], d.Dir)
			}
			if want := filepath.Join(d.Dir, strings.TrimPrefix(strings.Fields(tt.command)[0], "./")) + " arg"; lines[1] != want {
				t.Errorf("script path and argument = %q, want %q", lines[1], want)
			}
		})
	}
}

func TestCommandLookup(t *testing.T) {
	d := watchertest.Deps(t)
	// A machine's own file wins over PATH for a bare name.
	writeScript(t, d.Dir, "true", "exit 7")
	w := watchertest.BuildWith(t, d, "exec", `{"command":"true"}`)
	res, err := w.Check(t.Context())
	if err != nil || res.State.(State).ExitCode != 7 {
		t.Errorf("Check(true with ./true in machine dir) = exit %d, %v; want exit 7", res.State.(State).ExitCode, err)
	}

	w = watchertest.BuildWith(t, d, "exec", `{"command":"no-such-command-anywhere"}`)
	_, err = w.Check(t.Context())
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Check(missing command) err = %v, want exec.ErrNotFound", err)
	}

	writeScript(t, d.Dir, "sub/x", "exit 0")
	w = watchertest.BuildWith(t, d, "exec", `{"command":"./missing.sh"}`)
	if _, err = w.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "missing.sh") {
		t.Errorf("Check(./missing.sh) err = %v, want an error naming missing.sh", err)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	d := watchertest.Deps(t)
	writeScript(t, d.Dir, "hang.sh", "sleep 300 &\necho $! > grandchild.pid\nexec sleep 300")
	w := watchertest.BuildWith(t, d, "exec", `{"command":"./hang.sh","timeout":"2s"}`)
	res, err := w.Check(t.Context())
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Check() err = %v, want ErrTimeout", err)
	}
	if st := res.State.(State); st.PreviousOutcome != "error" || st.ExitCode != -1 {
		t.Errorf("Check() state = %+v, want previous_outcome error, exit_code -1", st)
	}
	waitGone(t, readPID(t, filepath.Join(d.Dir, "grandchild.pid")))
}

func TestCancelKillsProcessGroup(t *testing.T) {
	d := watchertest.Deps(t)
	writeScript(t, d.Dir, "hang.sh", "sleep 300 &\necho $! > grandchild.pid.tmp\nmv grandchild.pid.tmp grandchild.pid\nexec sleep 300")
	w := watchertest.BuildWith(t, d, "exec", `{"command":"hang.sh","timeout":"1h"}`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := w.Check(ctx)
		done <- err
	}()
	pidFile := filepath.Join(d.Dir, "grandchild.pid")
	natstest.Eventually(t, 10*time.Second, func() error { _, err := os.Stat(pidFile); return err })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Check() err = %v, want context.Canceled", err)
	}
	waitGone(t, readPID(t, pidFile))
}

func TestParseAsData(t *testing.T) {
	tests := []struct {
		name   string
		stdout string
		want   map[string]any
		err    string
	}{
		{name: "object", stdout: `{"b":{"c":"x"},"a":1}`, want: map[string]any{"a": 1.0, "b": map[string]any{"c": "x"}, "old": "kept"}},
		{name: "empty object", stdout: `{}`, want: map[string]any{"old": "kept"}},
		{name: "invalid", stdout: `{"a":`, err: "stdout is not valid JSON: unexpected end of JSON input"},
		{name: "array", stdout: `[1,2]`, err: "stdout is a JSON array, want an object"},
		{name: "string", stdout: `"x"`, err: "stdout is a JSON string, want an object"},
		{name: "empty", stdout: ``, err: "stdout is empty, want a JSON object"},
		{name: "trailing garbage", stdout: `{} x`, err: "stdout is not valid JSON: invalid character 'x' after top-level value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			if err := d.Data.Put("old", "kept"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d.Dir, "out.json"), []byte(tt.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			w := watchertest.BuildWith(t, d, "exec", `{"command":"cat out.json","parse_as_data":true}`)
			res, err := w.Check(t.Context())
			if tt.err != "" {
				want := `parse_as_data: output of "cat out.json": ` + tt.err
				if errString(err) != want {
					t.Errorf("Check() err = %v, want %q", err, want)
				}
				if diff := cmp.Diff(map[string]any{"old": "kept"}, d.Data.All()); diff != "" {
					t.Errorf("data changed after a bad output (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil || res.Outcome != watchers.Success {
				t.Fatalf("Check() = %v, %v; want success", res.Outcome, err)
			}
			if diff := cmp.Diff(tt.want, d.Data.All()); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseAsDataTooLong(t *testing.T) {
	w := watchertest.Build(t, "exec", `{"command":"head -c 1048577 /dev/zero","parse_as_data":true}`)
	_, err := w.Check(t.Context())
	if want := `parse_as_data: stdout of "head -c 1048577 /dev/zero" is longer than 1048576 bytes`; errString(err) != want {
		t.Errorf("Check() err = %v, want %q", err, want)
	}
}

func TestDataAndFactsFiles(t *testing.T) {
	d := watchertest.Deps(t)
	if err := d.Data.Put("k", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	writeScript(t, d.Dir, "copy.sh", `cp "$WATCHER_DATA" data.json && cp "$WATCHER_FACTS" facts.json && printf '%s\n%s\n' "$WATCHER_DATA" "$WATCHER_FACTS" > paths`)
	w := watchertest.BuildWith(t, d, "exec", `{"command":"copy.sh"}`)
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Fatalf("Check() = %v, %v; want success", res.Outcome, err)
	}
	for file, want := range map[string]map[string]any{"data.json": d.Data.All(), "facts.json": d.Facts()} {
		var got map[string]any
		b, err := os.ReadFile(filepath.Join(d.Dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", file, diff)
		}
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, "paths"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(b)) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary file %s still there after the run (stat err %v)", p, err)
		}
	}
}

func TestNilDataAndFacts(t *testing.T) {
	d := watchertest.Deps(t)
	d.Data, d.Facts = nil, nil
	w := watchertest.BuildWith(t, d, "exec", `{"command":"sh -c 'test \"$(cat $WATCHER_DATA)\" = \"{}\" && test \"$(cat $WATCHER_FACTS)\" = \"{}\"'"}`)
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Fatalf("Check() = %v, %v; want success (both files {})", res.Outcome, err)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("MMS_AGENT_ONLY", "must not leak")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		extra []string
		path  func(dir string) string
	}{
		{name: "default PATH", path: func(dir string) string { return os.Getenv("PATH") + ":" + dir }},
		{name: "PATH override", extra: []string{"PATH=/opt/x"}, path: func(string) string { return "/opt/x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			d.Machine, d.Watcher = "m1", "w1"
			env := append([]string{"MMS_EXEC_HELPER=env", "FOO=bar baz", "EMPTY="}, tt.extra...)
			w := watchertest.BuildWith(t, d, "exec", props(t, map[string]any{
				"command":     quoteWord(self) + " -test.run=^TestHelperProcess$",
				"environment": env,
			}))
			if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
				t.Fatalf("Check() = %v, %v (stderr %q); want success", res.Outcome, err, res.State.(State).Stderr)
			}
			var got map[string]string
			b, err := os.ReadFile(filepath.Join(d.Dir, "env.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"WATCHER_DATA", "WATCHER_FACTS"} {
				if !filepath.IsAbs(got[k]) {
					t.Errorf("%s = %q, want an absolute path", k, got[k])
				}
				got[k] = "<path>"
			}
			want := map[string]string{
				"MACHINE_NAME": "m1", "MACHINE_WATCHER_NAME": "w1", "PATH": tt.path(d.Dir),
				"WATCHER_DATA": "<path>", "WATCHER_FACTS": "<path>",
				"MMS_EXEC_HELPER": "env", "FOO": "bar baz", "EMPTY": "",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("child environment (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHelperProcess is the child of TestEnvironment: it writes its
// environment to env.json in its working directory.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("MMS_EXEC_HELPER") != "env" {
		t.Skip("helper process for TestEnvironment")
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("env.json", b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid file %s holds %q", path, b)
	}
	return pid
}

// waitGone waits until pid no longer runs (gone, or a zombie nobody has
// reaped yet).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		// Field 3, after the parenthesised command name, is the state.
		if s := string(b); strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z") {
			return nil
		}
		return errors.New("grandchild " + strconv.Itoa(pid) + " still running")
	})
}

// quoteWord quotes w as one word of a command line.
func quoteWord(w string) string {
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
