package filewatcher

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

const managed = `{"path":"f","contents":"hello\n","mode":"0640"}`

// assertFile checks path's content and permission bits.
func assertFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s holds %q, want %q", path, b, content)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s mode = %o, want %o", path, fi.Mode().Perm(), mode)
	}
}

// assertNoTemp checks that no temporary file was left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".mms-") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestContentMode(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, path string)
		reason string // "" for no rewrite
	}{
		{name: "missing", before: nothing, reason: "missing"},
		{name: "different content and mode", before: write("goodbye\n"), reason: "content, mode"},
		{name: "same size different content", before: func(t *testing.T, p string) {
			write("HELLO\n")(t, p)
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
		}, reason: "content"},
		{name: "different mode", before: func(t *testing.T, p string) {
			write("hello\n")(t, p)
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, reason: "mode"},
		{name: "symlink replaced", before: func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "target")
			write("hello\n")(t, target)
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, reason: "mode"}, // the target has 0644
		{name: "already right", before: func(t *testing.T, p string) {
			write("hello\n")(t, p)
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			path := filepath.Join(d.Dir, "f")
			tt.before(t, path)
			w := watchertest.BuildWith(t, d, "file", managed)
			res, err := w.Check(t.Context())
			if err != nil {
				t.Fatalf("Check() err = %v", err)
			}
			want := watchers.Result{Outcome: watchers.Unchanged, State: State{Path: path, PreviousOutcome: "unchanged"}}
			if tt.reason != "" {
				want = watchers.Result{Outcome: watchers.Success, State: State{Path: path, PreviousOutcome: "changed", Reason: tt.reason}}
			}
			if res != want {
				t.Errorf("Check() = %+v, want %+v", res, want)
			}
			assertFile(t, path, "hello\n", 0o640)
			assertNoTemp(t, d.Dir)
			if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Unchanged {
				t.Errorf("second Check() = %v, %v; want unchanged", res.Outcome, err)
			}
		})
	}
}

func TestContentRewriteIsAtomic(t *testing.T) {
	d := watchertest.Deps(t)
	path := filepath.Join(d.Dir, "f")
	write("old content\n")(t, path)
	// A hard link keeps the old inode: an in-place write would change it,
	// a rename leaves it alone.
	old := filepath.Join(d.Dir, "old")
	if err := os.Link(path, old); err != nil {
		t.Fatal(err)
	}
	w := watchertest.BuildWith(t, d, "file", managed)
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Fatalf("Check() = %v, %v; want success", res.Outcome, err)
	}
	assertFile(t, path, "hello\n", 0o640)
	assertFile(t, old, "old content\n", 0o644)
	assertNoTemp(t, d.Dir)
}

func TestContentOwnership(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	group, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, owner, group string
		uid, gid           int
	}{
		{name: "names", owner: me.Username, group: group.Name, uid: os.Getuid(), gid: os.Getgid()},
		{name: "numbers", owner: me.Uid, group: me.Gid, uid: os.Getuid(), gid: os.Getgid()},
	}
	if os.Getuid() == 0 {
		tests = append(tests, struct {
			name, owner, group string
			uid, gid           int
		}{name: "root gives away", owner: "65534", group: "65533", uid: 65534, gid: 65533})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			path := filepath.Join(d.Dir, "f")
			w := watchertest.BuildWith(t, d, "file", `{"path":"f","contents":"x","mode":"0644","owner":"`+tt.owner+`","group":"`+tt.group+`"}`)
			if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
				t.Fatalf("Check() = %v, %v; want success", res.Outcome, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if uid, gid, _ := fileOwner(fi); uid != tt.uid || gid != tt.gid {
				t.Errorf("owner = %d:%d, want %d:%d", uid, gid, tt.uid, tt.gid)
			}
			if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Unchanged {
				t.Errorf("second Check() = %v, %v; want unchanged", res.Outcome, err)
			}
		})
	}
}

func TestContentOwnerDrift(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	d := watchertest.Deps(t)
	path := filepath.Join(d.Dir, "f")
	w := watchertest.BuildWith(t, d, "file", `{"path":"f","contents":"x","mode":"0644","owner":"0","group":"0"}`)
	if _, err := w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		uid, gid int
		reason   string
	}{{65534, 0, "owner"}, {0, 65534, "group"}} {
		if err := os.Chown(path, c.uid, c.gid); err != nil {
			t.Fatal(err)
		}
		res, err := w.Check(t.Context())
		if err != nil || res.State.(State).Reason != c.reason {
			t.Errorf("Check() after chown %d:%d = %+v, %v; want rewrite for %s", c.uid, c.gid, res, err, c.reason)
		}
	}
}

func TestContentErrorsChangeNothing(t *testing.T) {
	tests := []struct {
		name  string
		props string
		setup func(t *testing.T, dir string)
		err   string // substring of the error
	}{
		{name: "unknown owner", props: `{"path":"f","contents":"x","mode":"0644","owner":"no-such-user-mms"}`,
			setup: func(t *testing.T, dir string) { write("old")(t, filepath.Join(dir, "f")) },
			err:   "owner: user: unknown user no-such-user-mms"},
		{name: "unknown group", props: `{"path":"f","contents":"x","mode":"0644","group":"no-such-group-mms"}`,
			setup: func(t *testing.T, dir string) { write("old")(t, filepath.Join(dir, "f")) },
			err:   "group: group: unknown group no-such-group-mms"},
		{name: "directory in the way", props: `{"path":"f","contents":"x","mode":"0644"}`,
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "f"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			err: "/f is a directory, not a regular file: refusing to replace it"},
		{name: "missing directory", props: `{"path":"nodir/f","contents":"x","mode":"0644"}`,
			setup: nothing, err: "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			tt.setup(t, d.Dir)
			before := snapshot(t, d.Dir)
			w := watchertest.BuildWith(t, d, "file", tt.props)
			res, err := w.Check(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Check() err = %v, want one containing %q", err, tt.err)
			}
			if res.Outcome != watchers.Failure || res.State.(State).PreviousOutcome != "error" {
				t.Errorf("Check() = %+v, want a failure with previous_outcome error", res)
			}
			if after := snapshot(t, d.Dir); after != before {
				t.Errorf("machine dir changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestContentPermissionDenied(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root may write anywhere")
	}
	d := watchertest.Deps(t)
	write("old")(t, filepath.Join(d.Dir, "f"))
	if err := os.Chmod(d.Dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(d.Dir, 0o755) })
	w := watchertest.BuildWith(t, d, "file", managed)
	if _, err := w.Check(t.Context()); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Check() err = %v, want permission denied", err)
	}
	assertFile(t, filepath.Join(d.Dir, "f"), "old", 0o644)
}

// snapshot describes every entry of dir: name, mode and content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.WriteString(" " + strconv.Quote(string(c)))
		}
		b.WriteString("; ")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestContentTemplates manages a file whose contents, owner, group and mode
// are templates over the machine data, as Choria's filewatcher test
// ("Should correctly manage the file", go-choria v0.30.2) does: the file
// holds the rendered text, never the template, and follows the machine
// data as Choria's does, since the templates are rendered again before
// every check. A value that renders as no mode at a check is a failure
// that leaves the file as it was.
func TestContentTemplates(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	d := watchertest.Deps(t)
	for k, v := range map[string]string{"test": "test_data", "owner": me.Username, "group": grp.Name, "mode": "0700"} {
		if err := d.Data.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	w := watchertest.BuildWith(t, d, "file", `{"path":"the.file",
		"contents":"{{ lookup \"data.test\" \"default\" | ToUpper }}",
		"owner":"{{ lookup \"data.owner\" \"nobody\"}}",
		"group":"{{ lookup \"data.group\" \"nobody\"}}",
		"mode":"{{ lookup \"data.mode\" \"0000\"}}"}`)
	res, err := w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Success {
		t.Fatalf("first Check() = %+v, %v; want the file written", res, err)
	}
	path := filepath.Join(d.Dir, "the.file")
	assertFile(t, path, "TEST_DATA", 0o700)
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Unchanged {
		t.Errorf("second Check() = %+v, %v; want unchanged", res, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Errorf("Check() after chmod = %+v, %v; want the mode repaired", res, err)
	}
	assertFile(t, path, "TEST_DATA", 0o700)

	for k, v := range map[string]string{"test": "new_data", "mode": "0640"} {
		if err := d.Data.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := w.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Errorf("Check() after the data changed = %+v, %v; want the file rewritten", res, err)
	}
	assertFile(t, path, "NEW_DATA", 0o640)

	if err := d.Data.Put("mode", "rwx"); err != nil {
		t.Fatal(err)
	}
	res, err = w.Check(t.Context())
	if err == nil || res.Outcome != watchers.Failure || !strings.Contains(err.Error(), `mode: template "{{ lookup \"data.mode\" \"0000\"}}": "rwx" is not an octal mode`) {
		t.Errorf("Check() with a mode that renders as none = %+v, %v; want a failure naming mode", res, err)
	}
	assertFile(t, path, "NEW_DATA", 0o640)
}

// TestContentTemplateErrors fails the load naming the property when a
// template does not parse or the mode renders as no mode.
func TestContentTemplateErrors(t *testing.T) {
	tests := []struct{ name, props, want string }{
		{name: "contents does not parse", props: `{"path":"f","contents":"{{ lookup ","mode":"0644"}`,
			want: `properties: contents: template "{{ lookup ": template: property:1: unclosed action`},
		{name: "owner does not parse", props: `{"path":"f","contents":"x","mode":"0644","owner":"{{ nope }}"}`,
			want: `properties: owner: template "{{ nope }}": template: property:1: function "nope" not defined`},
		{name: "mode renders as no mode", props: `{"path":"f","contents":"x","mode":"{{ lookup \"data.mode\" \"rwx\" }}"}`,
			want: `provision: mode: template "{{ lookup \"data.mode\" \"rwx\" }}": "rwx" is not an octal mode like "0644"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := watchertest.Deps(t)
			_, err := watchertest.New(d, "file", tt.props)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New(file, %s) = %v, want %s", tt.props, err, tt.want)
			}
			if entries, _ := os.ReadDir(d.Dir); len(entries) != 0 {
				t.Errorf("a refused watcher left %d files in %s", len(entries), d.Dir)
			}
		})
	}
}
