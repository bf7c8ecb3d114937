package mms_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/repotest"
)

// coldCache makes TestReleaseReproducible's second build use an empty build
// cache: go test -run TestReleaseReproducible -v . -args -release.coldcache
var coldCache = flag.Bool("release.coldcache", false, "TestReleaseReproducible: build the second release with an empty build cache (about 2 more minutes)")

// TestReleaseReproducible runs .ci/release twice, in two clones of this
// checkout at different paths and in different time zones, and requires
// byte-identical output. It then checks what a user downloads: SHA256SUMS
// lists every file with its hash, the binaries are static ELF files for
// linux/amd64 and linux/arm64 built with -trimpath and without cgo from the
// commit, the host's binary prints the version, commit and commit date
// stamped, the man page archive holds a page per command with the commit's
// date, and the unit and licenses are the repository's.
//
// Both builds share the build cache, so the second compiles nothing: with
// a warm cache the test takes about 15 s; from .ci/run's empty caches it is
// one cold build of both platforms, about 3 minutes of CPU (1.5 to 2
// minutes on 2 cores). -release.coldcache gives the second build an empty
// cache of its own, so that everything is compiled twice: 6m55s on a busy
// 2-core machine from empty caches (5m48s of CPU), too slow for every run;
// CONTRIBUTING.md says when to run it. Skipped in -short mode.
func TestReleaseReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two releases, one from an empty build cache; skipped in -short mode")
	}
	for _, tool := range []string{"bash", "git", "go", "tar", "gzip", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf(".ci/release needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	snapshot := repotest.Snapshot(t, root)
	release := func(checkout string, env ...string) string {
		t.Helper()
		repotest.Clone(t, snapshot, checkout)
		out := filepath.Join(t.TempDir(), "dist")
		cmd := exec.CommandContext(t.Context(), filepath.Join(checkout, ".ci", "release"), out)
		cmd.Dir = checkout
		cmd.Env = append(repotest.Env(), env...)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf(".ci/release in %s: %v\n%s", checkout, err, b)
		}
		t.Logf(".ci/release in %s (%s) took %s", checkout, strings.Join(env, " "), time.Since(start).Round(time.Second))
		return out
	}
	a := release(filepath.Join(t.TempDir(), "mms"))
	env := []string{"TZ=Asia/Tokyo"}
	if *coldCache {
		env = append(env, "GOCACHE="+t.TempDir())
	}
	b := release(filepath.Join(t.TempDir(), "another", "checkout"), env...)

	names := fileNames(t, a)
	if got := fileNames(t, b); !slices.Equal(names, got) {
		t.Fatalf("the two releases hold different files:\n%q\n%q", names, got)
	}
	wantNames := []string{"LICENSE", "NOTICE", "SHA256SUMS", "THIRD_PARTY_LICENSES", "mms-agent.service", "mms-linux-amd64", "mms-linux-arm64", "mms-man.tar.gz"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("release files = %q, want %q", names, wantNames)
	}
	for _, name := range names {
		if x, y := readBytes(t, filepath.Join(a, name)), readBytes(t, filepath.Join(b, name)); !bytes.Equal(x, y) {
			t.Errorf("%s differs between the two builds (%d and %d bytes, sha256 %s and %s)", name, len(x), len(y), sum(x), sum(y))
		}
	}

	var wantSums strings.Builder
	for _, name := range names {
		if name != "SHA256SUMS" {
			fmt.Fprintf(&wantSums, "%s  %s\n", sum(readBytes(t, filepath.Join(a, name))), name)
		}
	}
	if got := string(readBytes(t, filepath.Join(a, "SHA256SUMS"))); got != wantSums.String() {
		t.Errorf("SHA256SUMS =\n%s\nwant\n%s", got, wantSums.String())
	}

	commit := strings.TrimSpace(repotest.Git(t, snapshot, "rev-parse", "HEAD"))
	epoch := strings.TrimSpace(repotest.Git(t, snapshot, "show", "-s", "--format=%ct", "HEAD"))
	var secs int64
	if _, err := fmt.Sscan(epoch, &secs); err != nil {
		t.Fatal(err)
	}
	commitTime := time.Unix(secs, 0).UTC()
	version := "v0.0.0-" + commitTime.Format("20060102150405") + "-" + commit[:12]
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		checkBinary(t, filepath.Join(a, "mms-linux-"+arch), arch, machine, commit)
	}
	if runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") {
		out, err := exec.Command(filepath.Join(a, "mms-linux-"+runtime.GOARCH), "version").Output()
		want := fmt.Sprintf("mms %s\ncommit: %s\ndate:   %s\ngo:     %s linux/%s\n", version, commit, commitTime.Format(time.RFC3339), runtime.Version(), runtime.GOARCH)
		if err != nil || string(out) != want {
			t.Errorf("mms version = %q (%v), want %q", out, err, want)
		}
	}

	pages := tarFiles(t, filepath.Join(a, "mms-man.tar.gz"))
	for _, name := range []string{"man/man1/mms.1", "man/man1/mms-pack.1", "man/man1/mms-governor-add.1", "man/man1/mms-man.1"} {
		page, ok := pages[name]
		if !ok {
			t.Errorf("mms-man.tar.gz has no %s (it has %d files)", name, len(pages))
			continue
		}
		if want := fmt.Sprintf(`"1" %q "mms %s" "mms manual"`, commitTime.Format("Jan 2006"), version); !strings.Contains(page, want) {
			t.Errorf("%s has no header %s: %.100q", name, want, page)
		}
	}
	for name, src := range map[string]string{"mms-agent.service": "examples/systemd/mms-agent.service", "LICENSE": "LICENSE", "NOTICE": "NOTICE"} {
		if !bytes.Equal(readBytes(t, filepath.Join(a, name)), readBytes(t, filepath.Join(root, src))) {
			t.Errorf("the release's %s is not %s", name, src)
		}
	}
	if runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") {
		installLikeReadme(t, root, a, version)
	}
	licenses := string(readBytes(t, filepath.Join(a, "THIRD_PARTY_LICENSES")))
	for _, module := range []string{"github.com/nats-io/nats-server/v2", "github.com/spf13/cobra", "github.com/expr-lang/expr", "golang.org/x/sys"} {
		if !strings.Contains(licenses, "\n== "+module+" ") {
			t.Errorf("THIRD_PARTY_LICENSES has no license of %s", module)
		}
	}
}

// installLikeReadme pastes README's install block into sh in the release
// directory dist, with two changes: no sudo, and every absolute path under
// a temporary root. The binary, unit and man pages must land there.
func installLikeReadme(t *testing.T, root, dist, version string) {
	t.Helper()
	block := repotest.Block(t, string(readBytes(t, filepath.Join(root, "README.md"))), "## Run the agent as a service")
	dest := t.TempDir()
	for _, dir := range []string{"usr/local/bin", "usr/local/share", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(dest, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := strings.ReplaceAll(block, "sudo ", "")
	script = strings.ReplaceAll(script, " /", ` "$DEST"/`)
	cmd := exec.CommandContext(t.Context(), "sh", "-eu", "-c", script)
	cmd.Dir = dist
	cmd.Env = append(os.Environ(), "DEST="+dest, "PATH="+filepath.Join(dest, "usr", "local", "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README's install block, run in the release directory:\n%s\n%v\n%s", script, err, out)
	}
	for _, want := range []string{"mms-linux-" + runtime.GOARCH + ": OK\n", "mms-agent.service: OK\n", "mms-man.tar.gz: OK\n", "mms " + version + "\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README's install block printed no %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"usr/local/bin/mms", "etc/systemd/system/mms-agent.service", "usr/local/share/man/man1/mms-agent.1"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("README's install block did not install /%s: %v", f, err)
		}
	}
}

// checkBinary checks that path is a static ELF executable for machine, and
// that Go built it for linux/arch without cgo, with -trimpath, from commit
// with no local changes.
func checkBinary(t *testing.T, path, arch string, machine elf.Machine, commit string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s is for %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %v)", path, p.Type)
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for key, want := range map[string]string{"GOOS": "linux", "GOARCH": arch, "CGO_ENABLED": "0", "-trimpath": "true", "vcs.revision": commit, "vcs.modified": "false"} {
		if settings[key] != want {
			t.Errorf("%s was built with %s=%q, want %q", path, key, settings[key], want)
		}
	}
}

func fileNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// tarFiles returns the regular files of a tar.gz by name.
func tarFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(readBytes(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	files := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("%s: %s: %v", path, h.Name, err)
			}
			files[h.Name] = string(b)
		}
	}
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
