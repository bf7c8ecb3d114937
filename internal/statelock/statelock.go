// Package statelock keeps two mms processes from writing one directory at
// the same time: an exclusive flock(2) on a lock file in the directory,
// which the kernel releases when the holder dies, however it dies. The
// holder writes its pid and what it is into the file, so whoever is refused
// can say who holds it.
package statelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Lock file names.
const (
	// StateFile is the lock file of an agent's state directory.
	StateFile = "lock"
	// DirFile is the lock file of the machines and data directories: a
	// dot-name, which the host skips and no machine name can take.
	DirFile = ".mms-lock"
)

// ErrHeld is returned (as a *HeldError) when another process holds the lock.
var ErrHeld = errors.New("directory is locked by another process")

// HeldError says which process holds a lock.
type HeldError struct {
	// Dir is the locked directory.
	Dir string
	// PID is the holder's process id; 0 when it has not written it (yet).
	PID int
	// Holder is what the holder said it is, such as "mms agent".
	Holder string
	// Exited says the process PID names has exited: a process it started
	// still holds the lock's open file.
	Exited bool
}

func (e *HeldError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	if e.Exited {
		return fmt.Sprintf("a process started by %s (%s, which has exited) still holds %s", e.Holder, pid, e.Dir)
	}
	return fmt.Sprintf("another %s (%s) is using %s", e.Holder, pid, e.Dir)
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// defaultHolder names a holder that wrote no name.
const defaultHolder = "mms agent"

// pidWait bounds how long Acquire waits for a holder that has just taken
// the lock to write its pid.
const pidWait = time.Second

// Lock is a held lock; Release it, or let the process exit.
type Lock struct {
	f   *os.File
	dir string
}

// ownGrace is how long Acquire keeps trying a lock whose recorded holder
// is this very process or a process that has exited. A child forked by
// the holder shares the lock's open file until it execs, which under load
// can take a while: an agent stopped and started again in one process (a
// test, or a node binary that embeds the agent and restarts it) has
// released its lock, and an agent killed (SIGKILL, the OOM killer) has
// lost it, but a command one of its watchers was starting at that moment
// still holds it for those milliseconds. A live process's lock is refused
// at once.
const ownGrace = 2 * time.Second

// Acquire takes the exclusive lock on dir through its lock file dir/file,
// creating the file (0600, never through a symbolic link) if needed, and
// records holder (e.g. "mms agent") and this process's pid in it. dir must
// exist. It does not wait for another process: when one holds the lock it
// returns a *HeldError naming that process. When the recorded holder is
// this process or has exited, it retries for a short while first (see
// ownGrace).
func Acquire(dir, file, holder string) (*Lock, error) {
	return acquire(dir, file, holder, ownGrace)
}

// acquire is Acquire with the time it keeps trying a lock this process
// holds.
func acquire(dir, file, holder string, grace time.Duration) (*Lock, error) {
	if holder == "" {
		holder = defaultHolder
	}
	path := filepath.Join(dir, file)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	deadline := time.Now().Add(grace)
	for {
		err := flock(fd)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held := heldBy(dir, path)
		held.Exited = held.PID > 0 && held.PID != os.Getpid() && !alive(held.PID)
		if (held.PID != os.Getpid() && !held.Exited) || time.Now().After(deadline) {
			f.Close()
			return nil, held
		}
		time.Sleep(ownRetry)
	}
	if err := record(f, holder); err != nil {
		f.Close()
		return nil, fmt.Errorf("record the holder in the lock file: %w", err)
	}
	return &Lock{f: f, dir: dir}, nil
}

// record writes this process's pid and holder into the held lock file f,
// replacing what a previous holder left.
func record(f *os.File, holder string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+holder+"\n"), 0)
	return err
}

// alive says whether process pid exists (a zombie, killed but not yet
// reaped, still does; so does one this process may not signal).
func alive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// ownRetry is how often acquire tries again a lock this process holds.
const ownRetry = 10 * time.Millisecond

// flock takes an exclusive, non-blocking flock on fd, retrying when a
// signal interrupts it.
func flock(fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// heldBy reads who holds the lock file path of dir. A holder that has
// just taken the lock may not have written its pid yet: it waits for it a
// little.
func heldBy(dir, path string) *HeldError {
	e := &HeldError{Dir: dir, Holder: defaultHolder}
	deadline := time.Now().Add(pidWait)
	for {
		if data, err := os.ReadFile(path); err == nil {
			if pid, holder, ok := parse(string(data)); ok {
				e.PID = pid
				if holder != "" {
					e.Holder = holder
				}
				return e
			}
		}
		if time.Now().After(deadline) {
			return e
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holderPattern is what a holder name read back from a lock file may be;
// anything else (it ends up in a message on a terminal) is not shown.
var holderPattern = regexp.MustCompile(`^[a-z][a-z -]{0,39}$`)

// parse reads a lock file's "PID\nHOLDER\n". ok is false without a valid
// pid; holder is empty unless it is a plain name.
func parse(content string) (pid int, holder string, ok bool) {
	first, rest, _ := strings.Cut(content, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	holder, _, _ = strings.Cut(rest, "\n")
	if holder = strings.TrimSpace(holder); !holderPattern.MatchString(holder) {
		holder = ""
	}
	return pid, holder, true
}

// Release gives the lock up. The file stays (removing it would let a
// process that opened it before the removal lock a file nobody else sees).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("release lock of %s: %w", l.dir, err)
	}
	return nil
}
