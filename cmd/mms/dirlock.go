package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/mms-io/mms/internal/statelock"
	"github.com/mms-io/mms/internal/strictmodes"
	"github.com/mms-io/mms/manager/mmsmanager"
)

// lockDirs creates (0700) and locks the directories a process writes, in
// order, so that no two mms processes write one at a time: stateDir (if
// not empty) through its statelock.StateFile, each of dirs through
// statelock.DirFile. It fails at once, naming the holder, when another
// process holds one. release gives every lock up.
func lockDirs(holder, stateDir string, dirs ...string) (release func(), err error) {
	var locks []*statelock.Lock
	release = func() {
		for _, l := range slices.Backward(locks) {
			_ = l.Release()
		}
	}
	take := func(dir, file string) error {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		l, err := statelock.Acquire(dir, file, holder)
		if err != nil {
			return err
		}
		locks = append(locks, l)
		return nil
	}
	if stateDir != "" {
		if err := take(stateDir, statelock.StateFile); err != nil {
			return nil, err
		}
	}
	var seen []string
	for _, d := range dirs {
		if slices.Contains(seen, d) {
			continue
		}
		seen = append(seen, d)
		if err := take(d, statelock.DirFile); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// checkAgentDirs refuses, naming the path and the fix, an agent directory
// that someone other than root or this process's user could change (see
// strictmodes): the state, machines, data and credentials directories, and
// every directory above them. The manager reads node-local credentials
// from its own state directory, <state>/mms_manager/credentials (the README
// has said <state>/credentials): both are checked.
func checkAgentDirs(stateDir, machinesDir, dataDir string) error {
	uid := os.Geteuid()
	for _, d := range []struct{ what, dir string }{
		{"state directory", stateDir},
		{"machines directory", machinesDir},
		{"data directory", dataDir},
		{"credentials directory", filepath.Join(stateDir, mmsmanager.MachineName, "credentials")},
		{"credentials directory", filepath.Join(stateDir, "credentials")},
	} {
		if err := strictmodes.Check(d.dir, uid); err != nil {
			return fmt.Errorf("refusing the %s: %w", d.what, err)
		}
	}
	return nil
}
