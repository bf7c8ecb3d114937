//go:build linux

package execwatcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

// procStat returns field n (1-based, as in proc(5)) of /proc/pid/stat.
func procStat(t *testing.T, pid, n int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatalf("read /proc/%d/stat: %v", pid, err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // field 3 onwards
	v, err := strconv.Atoi(fields[n-3])
	if err != nil {
		t.Fatalf("/proc/%d/stat field %d = %q", pid, n, fields[n-3])
	}
	return v
}

func TestDisown(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to inspect the disowned process")
	}
	d := watchertest.Deps(t)
	// The script records itself and its data files, then runs until the
	// test creates "go".
	writeScript(t, d.Dir, "long.sh", `printf '%s\n%s\n' "$WATCHER_DATA" "$WATCHER_FACTS" > files
echo $$ > pid.tmp && mv pid.tmp pid
while [ ! -e go ]; do sleep 0.05; done
echo finished > done`)
	w := watchertest.BuildWith(t, d, "exec", `{"command":"./long.sh","disown":true,"timeout":"1s"}`)
	ctx, cancel := context.WithCancel(t.Context())
	res, err := w.Check(ctx)
	cancel() // a disowned command outlives the check that started it
	if err != nil || res.Outcome != watchers.Success {
		t.Fatalf("Check() = %v, %v; want success as soon as the command started", res.Outcome, err)
	}
	st := res.State.(State)
	if st.PID <= 0 || st.ExitCode != -1 || st.PreviousOutcome != "success" {
		t.Errorf("state = %+v, want a pid, exit_code -1, previous_outcome success", st)
	}
	pidFile := filepath.Join(d.Dir, "pid")
	natstest.Eventually(t, 10*time.Second, func() error { _, err := os.Stat(pidFile); return err })
	pid := readPID(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	// It runs on past its 1s timeout, in a session of its own, and is not
	// the agent's child.
	if sid, err := unix.Getsid(pid); err != nil || sid == unix.Getpid() || sid == mustGetsid(t) {
		t.Errorf("session of the disowned command = %d, %v; want a new session, not the agent's %d", sid, err, mustGetsid(t))
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if ppid := procStat(t, st.PID, 4); ppid == os.Getpid() {
			return fmt.Errorf("the disowned command's parent %d is still the agent's child", st.PID)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(d.Dir, "done")); err == nil {
		t.Fatal("the command finished before it was told to: the test proves nothing")
	}

	b, err := os.ReadFile(filepath.Join(d.Dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	files := strings.Fields(string(b))
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("data file %s gone while the command runs: %v", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		for _, f := range files {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("data file %s still there after the command ended (%v)", f, err)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(d.Dir, "done")); err != nil {
		t.Errorf("the command did not run to its end: %v", err)
	}
}

func mustGetsid(t *testing.T) int {
	t.Helper()
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

func TestDisownMissingCommand(t *testing.T) {
	w := watchertest.Build(t, "exec", `{"command":"./nope.sh","disown":true}`)
	if _, err := w.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "nope.sh") {
		t.Errorf("Check(missing disowned command) err = %v, want one naming nope.sh", err)
	}
}
