//go:build !unix

package command

import (
	"context"
	"os/exec"
)

// killGroupOnCancel leaves cmd as it is: without Unix process groups a
// cancelled command's own process is killed (os/exec's default) but
// processes it started may survive.
func killGroupOnCancel(*exec.Cmd) {}

// CanDisown is whether [Env.Start] can disown a command here: it needs a
// POSIX shell and sessions.
const CanDisown = false

// disowned is never called where CanDisown is false.
func disowned(ctx context.Context, path string, args []string) *exec.Cmd {
	return exec.CommandContext(ctx, path, args...)
}
