//go:build unix

package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// killGroupOnCancel starts cmd as the leader of a new process group and
// makes cancelling its context kill that whole group, so grandchildren do
// not outlive a timed-out command.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// With Setpgid the group id is the child's pid. Cancel runs only
		// before Wait reaps the child, so the id cannot have been reused.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}

// CanDisown is whether [Env.Start] can disown a command here.
const CanDisown = true

// disownScript runs "$@" in a background subshell that removes the two
// data files when the command ends, and prints the subshell's pid. The
// shell running it exits at once, so the subshell is re-parented to init
// (or the nearest subreaper), which reaps it: the agent keeps no child.
const disownScript = `( "$@"; rm -f -- "$WATCHER_DATA" "$WATCHER_FACTS" ) </dev/null >/dev/null 2>&1 & echo $!`

// disowned returns the command that starts path with args disowned: through
// /bin/sh, in a new session, so neither the agent's process group nor its
// terminal reach it.
func disowned(ctx context.Context, path string, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", disownScript, "mms-disown", path}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}
