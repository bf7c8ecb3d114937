package statelock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAcquireRefusesSecondHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, StateFile, "mms agent")
	if err != nil {
		t.Fatalf("Acquire(%s) = %v", dir, err)
	}
	_, err = acquire(dir, StateFile, "mms agent", 0)
	want := fmt.Sprintf("another mms agent (pid %d) is using %s", os.Getpid(), dir)
	if err == nil || err.Error() != want {
		t.Fatalf("second Acquire(%s) = %v, want %q", dir, err, want)
	}
	if !errors.Is(err, ErrHeld) {
		t.Errorf("errors.Is(%v, ErrHeld) = false", err)
	}
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || held.Dir != dir || held.Holder != "mms agent" {
		t.Errorf("second Acquire error = %#v, want this pid, dir and holder", err)
	}

	path := filepath.Join(dir, StateFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode = %v, want 0600", st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), strconv.Itoa(os.Getpid())+"\nmms agent\n"; got != want {
		t.Errorf("lock file = %q, want %q", got, want)
	}

	if err := l.Release(); err != nil {
		t.Fatalf("Release = %v", err)
	}
	l2, err := Acquire(dir, StateFile, "mms machine run")
	if err != nil {
		t.Fatalf("Acquire after Release = %v", err)
	}
	defer l2.Release()
	if _, err := acquire(dir, StateFile, "", 0); err == nil || !strings.HasPrefix(err.Error(), "another mms machine run (pid ") {
		t.Errorf("Acquire while mms machine run holds it = %v, want it named", err)
	}
}

// TestAcquireAfterInheritedRelease is an agent restarted in one process
// while a child forked by another goroutine still shares the released
// lock's open file: the new Acquire waits for the child (here a
// duplicated descriptor, closed a moment later) instead of refusing its
// own process. A lock this process really keeps is still refused once the
// grace is over.
func TestAcquireAfterInheritedRelease(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, StateFile, "mms agent")
	if err != nil {
		t.Fatal(err)
	}
	inherited, err := unix.Dup(int(l.f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // the child takes a while to exec
		unix.Close(inherited)
	}()
	l2, err := Acquire(dir, StateFile, "mms agent")
	if err != nil {
		t.Fatalf("Acquire after this process released the lock = %v, want it once the inherited descriptor closes", err)
	}
	defer l2.Release()

	start := time.Now()
	_, err = acquire(dir, StateFile, "mms agent", 50*time.Millisecond)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() {
		t.Fatalf("Acquire of a lock this process holds = %v, want a HeldError with this pid", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("refused after %v, before the grace of 50ms", waited)
	}
}

// TestAcquireAfterKilledHolder is an agent killed while one of its
// watchers was starting a command: the forked child shares the lock's open
// file until it execs, so the kernel keeps the lock a moment after the
// holder died. The next agent waits for the child instead of refusing a
// process that no longer exists; a lock a dead holder's descendant keeps
// past the grace is refused saying so.
func TestAcquireAfterKilledHolder(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true(1) to make a dead pid:", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, StateFile)
	if err := os.WriteFile(path, []byte(strconv.Itoa(dead.Process.Pid)+"\nmms agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The child: another open file description of the lock file, locked.
	child, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(child, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err = acquire(dir, StateFile, "mms agent", 50*time.Millisecond)
	want := fmt.Sprintf("a process started by mms agent (pid %d, which has exited) still holds %s", dead.Process.Pid, dir)
	var held *HeldError
	if err == nil || err.Error() != want || !errors.As(err, &held) || !held.Exited {
		t.Fatalf("Acquire while a dead holder's child keeps the lock = %v, want %q", err, want)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("refused after %v, before the grace of 50ms", waited)
	}

	go func() {
		time.Sleep(100 * time.Millisecond) // the child execs
		unix.Close(child)
	}()
	l, err := Acquire(dir, StateFile, "mms agent")
	if err != nil {
		t.Fatalf("Acquire once the dead holder's child let go = %v, want the lock", err)
	}
	l.Release()
}

func TestAcquireOverwritesStaleContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DirFile)
	if err := os.WriteFile(path, []byte("999999999\nsome very long holder name left by a dead process\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir, DirFile, "mms agent")
	if err != nil {
		t.Fatalf("Acquire over a stale file = %v", err)
	}
	defer l.Release()
	data, _ := os.ReadFile(path)
	if got, want := string(data), strconv.Itoa(os.Getpid())+"\nmms agent\n"; got != want {
		t.Errorf("lock file = %q, want %q", got, want)
	}
}

func TestAcquireErrors(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, StateFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(dir, StateFile, ""); err == nil || !strings.Contains(err.Error(), "open lock file "+filepath.Join(dir, StateFile)) {
		t.Errorf("Acquire through a symbolic link = %v, want a refusal naming the file", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := Acquire(missing, StateFile, ""); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Acquire(%s) = %v, want not exist", missing, err)
	}
}

// TestAcquirePIDUnknown holds the lock without writing a pid, as a holder
// between its flock and its write: Acquire waits a little, then says so.
func TestAcquirePIDUnknown(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, StateFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, StateFile, "")
	if want := "another mms agent (pid unknown) is using " + dir; err == nil || err.Error() != want {
		t.Errorf("Acquire = %v, want %q", err, want)
	}
}

// holdEnv makes the test binary a lock holder (see TestMain).
const holdEnv = "STATELOCK_TEST_HOLD"

// fsizeEnv makes the test binary try to Acquire with a file size limit of
// zero, so writing the lock file fails (see TestAcquireWriteFails).
const fsizeEnv = "STATELOCK_TEST_FSIZE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(fsizeEnv); dir != "" {
		// Go ignores SIGXFSZ: a write past the limit fails with EFBIG.
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
			fmt.Println("setrlimit:", err)
			os.Exit(1)
		}
		l, err := Acquire(dir, StateFile, "mms agent")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		l.Release()
		fmt.Println("locked")
		os.Exit(0)
	}
	if dir := os.Getenv(holdEnv); dir != "" {
		if _, err := Acquire(dir, StateFile, "mms agent"); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // hold until killed
	}
	os.Exit(m.Run())
}

// TestAcquireWriteFails: a lock whose pid and holder cannot be written is
// an error, not a lock that names nobody (a process whose file size limit
// is zero cannot write the file).
func TestAcquireWriteFails(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fsizeEnv+"="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("acquiring process: %v (output %q)", err, out)
	}
	path := filepath.Join(dir, StateFile)
	if want := "error: record the holder in the lock file: write " + path + ": file too large\n"; string(out) != want {
		t.Errorf("Acquire with no room to write the lock file said %q, want %q", out, want)
	}
}

// TestKilledHolderReleases kills a holder process with SIGKILL, which runs
// no cleanup at all: the kernel drops its lock, so the next Acquire works.
func TestKilledHolderReleases(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder said %q (%v), want locked", line, err)
	}

	_, err = Acquire(dir, StateFile, "")
	if want := fmt.Sprintf("another mms agent (pid %d) is using %s", cmd.Process.Pid, dir); err == nil || err.Error() != want {
		t.Fatalf("Acquire while the holder runs = %v, want %q", err, want)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := Acquire(dir, StateFile, "")
	if err != nil {
		t.Fatalf("Acquire after the holder was killed = %v, want the lock", err)
	}
	l.Release()
}

var parseTests = []struct {
	name    string
	content string
	pid     int
	holder  string
	ok      bool
}{
	{"pid and holder", "123\nmms agent\n", 123, "mms agent", true},
	{"pid only", "123\n", 123, "", true},
	{"no newline", "42", 42, "", true},
	{"spaces", " 7 \n mms machine run \n", 7, "mms machine run", true},
	{"empty", "", 0, "", false},
	{"not a number", "abc\nmms agent\n", 0, "", false},
	{"zero", "0\n", 0, "", false},
	{"negative", "-5\n", 0, "", false},
	{"escape in holder", "9\nmms \x1b[2Jagent\n", 9, "", true},
	{"long holder", "9\n" + strings.Repeat("a", 41) + "\n", 9, "", true},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			pid, holder, ok := parse(tt.content)
			if pid != tt.pid || holder != tt.holder || ok != tt.ok {
				t.Errorf("parse(%q) = %d, %q, %v; want %d, %q, %v", tt.content, pid, holder, ok, tt.pid, tt.holder, tt.ok)
			}
		})
	}
}

// FuzzParse: a lock file is written by whoever could write it; parse never
// panics, and returns a positive pid and a plain holder name or nothing.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.content)
	}
	f.Fuzz(func(t *testing.T, content string) {
		pid, holder, ok := parse(content)
		if ok != (pid > 0) {
			t.Errorf("parse(%q) = pid %d, ok %v", content, pid, ok)
		}
		if holder != "" && !holderPattern.MatchString(holder) {
			t.Errorf("parse(%q) holder %q is not a plain name", content, holder)
		}
	})
}
