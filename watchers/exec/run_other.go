//go:build !unix

package execwatcher

import "os/exec"

// killGroupOnCancel leaves cmd as it is: without Unix process groups a
// cancelled command's own process is killed (os/exec's default) but
// processes it started may survive.
func killGroupOnCancel(*exec.Cmd) {}
