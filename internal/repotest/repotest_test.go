package repotest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	const heading = "## Walk"
	doc := "# x\n" + heading + "\n\ntext\n\n```sh\n# comment\nmms a\n\nmms b \\\n  --c\ncat > f <<'EOF'\n[1,\n 2]\nEOF\nmms d | mms e\n```\n\n```sh\nmms later\n```\n"
	got := Commands(t, Block(t, doc, heading))
	want := []string{"mms a", "mms b \\\n  --c", "cat > f <<'EOF'\n[1,\n 2]\nEOF", "mms d | mms e"}
	if strings.Join(got, "|||") != strings.Join(want, "|||") {
		t.Errorf("Commands() = %q, want %q", got, want)
	}
	if got, want := Block(t, doc, heading), "# comment\nmms a\n\nmms b \\\n  --c\ncat > f <<'EOF'\n[1,\n 2]\nEOF\nmms d | mms e\n"; got != want {
		t.Errorf("Block() = %q, want %q", got, want)
	}
	top := "# x\n\n```sh\nmms top   # a comment\n```\n" + doc
	if got := Commands(t, FirstBlock(t, top)); len(got) != 1 || got[0] != "mms top   # a comment" {
		t.Errorf("Commands(FirstBlock()) = %q, want the top block's one command", got)
	}
}

// TestSnapshot clones a snapshot of a checkout with an uncommitted edit, a
// new file and an ignored file: the clone has the edit and the new file,
// not the ignored one, and the checkout is left as it was.
func TestSnapshot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "repo")
	Git(t, "", "init", "-q", root)
	write(t, filepath.Join(root, ".gitignore"), "/built\n")
	write(t, filepath.Join(root, "a.txt"), "committed\n")
	Git(t, root, "add", "--all")
	Git(t, root, "commit", "-q", "-m", "first")
	write(t, filepath.Join(root, "a.txt"), "edited\n")
	write(t, filepath.Join(root, "new.txt"), "new\n")
	write(t, filepath.Join(root, "built"), "ignored\n")
	status := Git(t, root, "status", "--porcelain")
	head := Git(t, root, "rev-parse", "HEAD")

	clone := filepath.Join(t.TempDir(), "clone")
	Clone(t, Snapshot(t, root), clone)
	for name, want := range map[string]string{"a.txt": "edited\n", "new.txt": "new\n", ".gitignore": "/built\n"} {
		if got, err := os.ReadFile(filepath.Join(clone, name)); err != nil || string(got) != want {
			t.Errorf("clone's %s = %q (%v), want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(clone, "built")); !os.IsNotExist(err) {
		t.Errorf("clone has the ignored file built (stat: %v)", err)
	}
	if got := Git(t, clone, "status", "--porcelain"); got != "" {
		t.Errorf("the clone is not clean:\n%s", got)
	}
	if got := Git(t, root, "status", "--porcelain"); got != status {
		t.Errorf("the checkout's status changed from\n%s\nto\n%s", status, got)
	}
	if got := Git(t, root, "rev-parse", "HEAD"); got != head {
		t.Errorf("the checkout's HEAD moved from %s to %s", head, got)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
