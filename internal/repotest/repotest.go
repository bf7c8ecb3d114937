// Package repotest gives tests what a newcomer gets from `git clone`: a
// fresh clone of this repository, holding the working tree as it is on disk,
// uncommitted edits included, and nothing that .gitignore excludes (built
// binaries, keys, a go.work).
package repotest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Snapshot commits the working tree of the checkout at root — its tracked
// files as they are on disk and the untracked files .gitignore does not
// exclude — to a new repository in a temporary directory, and returns the
// repository's path, for `git clone`. The repository is named mms.git, so a
// clone of it is a directory mms, as a clone of github.com/mms-io/mms is. The checkout itself is only read:
// its index, refs and objects are not touched. The test fails if git is
// missing or root is not a git checkout.
func Snapshot(tb testing.TB, root string) string {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Fatalf("git is needed to clone the repository: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		tb.Fatalf("%s is not a git checkout (%v); these tests clone it", root, err)
	}
	repo := filepath.Join(tb.TempDir(), "mms.git")
	Git(tb, "", "init", "-q", "--bare", "--initial-branch=main", repo)
	Git(tb, "", "--git-dir="+repo, "--work-tree="+root, "add", "--all")
	Git(tb, "", "--git-dir="+repo, "--work-tree="+root, "commit", "-q", "--no-verify", "-m", "snapshot of the working tree")
	return repo
}

// Clone clones repo (a path or URL) into dir, which must not exist yet.
func Clone(tb testing.TB, repo, dir string) {
	tb.Helper()
	Git(tb, "", "clone", "-q", repo, dir)
}

// Git runs git with args in dir (the current directory when empty), apart
// from the user's and the system's git configuration and from any
// repository named by the environment, and returns its standard output.
// The test fails if git fails.
func Git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.CommandContext(tb.Context(), "git", append([]string{
		"-c", "user.name=mms test", "-c", "user.email=test@mms.invalid",
		"-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main",
	}, args...)...)
	cmd.Dir = dir
	cmd.Env = Env()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Env is the environment for git, and for commands that run git: the
// test's, without the variables that point git at another repository or
// configuration.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull)
}
