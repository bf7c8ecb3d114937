package plugins_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/plugins"
	"github.com/mms-io/mms/plugins/internal/gen"
	"github.com/mms-io/mms/watchers"
)

// TestGeneratedUpToDate regenerates zz_plugins.go from user_plugins.yaml in
// memory and compares it with the file in the tree.
func TestGeneratedUpToDate(t *testing.T) {
	src, err := os.ReadFile("../user_plugins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := gen.Generate(src)
	if err != nil {
		t.Fatalf("user_plugins.yaml is invalid:\n%v", err)
	}
	got, err := os.ReadFile("zz_plugins.go")
	if err != nil {
		t.Fatalf("%v; run `go generate ./plugins`", err)
	}
	if string(got) != string(want) {
		diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n"))
		t.Errorf("plugins/zz_plugins.go is out of date with user_plugins.yaml; run `go generate ./plugins` (-generated +on disk):\n%s", diff)
	}
}

// TestListMatchesFile checks that List returns what user_plugins.yaml lists.
func TestListMatchesFile(t *testing.T) {
	src, err := os.ReadFile("../user_plugins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := gen.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	var want []plugins.Plugin
	for _, p := range parsed {
		want = append(want, plugins.Plugin{Name: p.Name, ImportPath: p.ImportPath})
	}
	if diff := cmp.Diff(want, plugins.List()); diff != "" {
		t.Errorf("List() mismatch with user_plugins.yaml (-want +got):\n%s", diff)
	}
	l := plugins.List()
	if len(l) > 0 {
		l[0].Name = "changed"
		if plugins.List()[0].Name == "changed" {
			t.Errorf("List() returned the package's own slice; changing it changed the next List()")
		}
	}
}

// builtinWatchers is where the built-in watcher types live; each listed
// package under it registers the type named like its plugin.
const builtinWatchers = "github.com/mms-io/mms/watchers/"

// TestRegistered checks that every listed watcher package registers a
// watcher type whose implementation lives in that package, and that each
// built-in one registers the type named like its plugin.
func TestRegistered(t *testing.T) {
	byPackage := map[string][]string{}
	for _, info := range watchers.Types() {
		pkg := packageOf(info.New())
		byPackage[pkg] = append(byPackage[pkg], info.Type)
	}
	checked := 0
	for _, p := range plugins.List() {
		if !strings.HasPrefix(p.ImportPath, builtinWatchers) {
			// A machine package registers machines, which the agent does
			// not attribute to a package; `mms plugins` lists them.
			continue
		}
		checked++
		types := byPackage[p.ImportPath]
		if len(types) == 0 {
			t.Errorf("plugin %q (%s) registers no watcher type; registered: %v", p.Name, p.ImportPath, byPackage)
			continue
		}
		info, ok := watchers.Lookup(p.Name)
		if !ok || packageOf(info.New()) != p.ImportPath {
			t.Errorf("built-in plugin %q (%s) registers types %v, want one named %q", p.Name, p.ImportPath, types, p.Name)
		}
	}
	if checked == 0 {
		t.Errorf("user_plugins.yaml lists no built-in watcher; List() = %v", plugins.List())
	}
}

// packageOf returns the import path of the package that defines w's type.
func packageOf(w watchers.Watcher) string {
	t := reflect.TypeOf(w)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return ""
	}
	return t.PkgPath()
}
