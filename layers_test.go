package mms_test

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

// module is the import path of this module.
const module = "github.com/mms-io/mms"

// layer is one row of the layers table: packages that sit at the same rank.
type layer struct {
	// floor is README "Layout"'s floor: 0 helpers, 1 model … 6 binary.
	floor int
	// pkgs are import paths below the module, or path.Match patterns
	// ("internal/*") for the packages no exact row names.
	pkgs []string
	// peers lets the layer's packages import each other (Go still forbids
	// cycles); otherwise they are independent.
	peers bool
	// never are packages the layer must not depend on, even indirectly,
	// though they sit below it; why says why.
	never []string
	why   string
}

// floorNames are README "Layout"'s names of the floors.
var floorNames = []string{"helpers", "model", "plugins", "node", "reports", "operator", "binary"}

// layers is README "Layout" as data, bottom-up. A package may import the
// packages of the layers before its own (lower floors, and earlier rows of
// its floor), and those of its own layer when it has peers. Rows whose
// packages do not exist (yet) are skipped.
func layers() []layer {
	return []layer{
		// Helpers know nothing of the domain: they import only each other.
		{floor: 0, pkgs: []string{"internal/*"}, peers: true},

		{floor: 1, pkgs: []string{"spec"}},
		{floor: 1, pkgs: []string{"packer"}},
		{floor: 1, pkgs: []string{"watchers"}, never: []string{"spec", "packer"},
			why: "the watcher contract knows nothing of specs or signing"},
		{floor: 1, pkgs: []string{"machine"}, never: []string{"packer"},
			why: "the machine.yaml model knows nothing of signing"},

		{floor: 2, pkgs: []string{"governor"}},
		{floor: 2, pkgs: []string{"watchers/render", "watchers/promexport"}},
		{floor: 2, pkgs: []string{"watchers/internal/*"}},
		{floor: 2, pkgs: []string{"watchers/watchertest"}},
		// The watcher types: watchers, their internals, machine, spec,
		// governor and helpers; never each other.
		{floor: 2, pkgs: []string{"watchers/*"}, never: []string{"packer"},
			why: "a watcher type knows nothing of signing"},

		{floor: 3, pkgs: []string{"manager/rollout"}},
		{floor: 3, pkgs: []string{"manager"}},
		{floor: 3, pkgs: []string{"agent"}, never: []string{"packer", "manager"},
			why: "the runtime knows nothing of signing or of the manager"},
		{floor: 3, pkgs: []string{"agent/agenttest"}},
		{floor: 3, pkgs: []string{"manager/archivewatcher", "manager/machineswatcher"}},
		{floor: 3, pkgs: []string{"manager/mmsmanager"}},

		{floor: 4, pkgs: []string{"nodestatus", "nodemetrics"}},
		{floor: 4, pkgs: []string{"nodestatus/nodestatustest"}},

		{floor: 5, pkgs: []string{"provision"}},
		{floor: 5, pkgs: []string{"bench", "fleet"}},
		{floor: 5, pkgs: []string{"web"}},

		{floor: 6, pkgs: []string{"plugins/internal/*"}},
		{floor: 6, pkgs: []string{"plugins"}},
		{floor: 6, pkgs: []string{"plugins/internal/*/cmd/*"}},
		{floor: 6, pkgs: []string{"cmd/mms"}},
	}
}

// pkgInfo is one package of the module: its path below the module, its
// module imports and all its module dependencies (both the same way).
type pkgInfo struct {
	path          string
	imports, deps []string
}

// TestLayers keeps the import graph bottom-up (README "Layout"): every
// package of the module is in the layers table, and imports only what its
// place in the table allows. A new package fails here until it is placed.
func TestLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.CommandContext(t.Context(), "go", "list", "-f",
		`{{.ImportPath}}|{{len .GoFiles}}|{{join .Imports " "}}|{{join .Deps " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 4 {
			t.Fatalf("go list printed %q", line)
		}
		if f[1] == "0" {
			continue // test files only (this package)
		}
		pkgs = append(pkgs, pkgInfo{path: inModule(f[0]), imports: ownPaths(f[2]), deps: ownPaths(f[3])})
	}
	if len(pkgs) < 40 {
		t.Fatalf("go list found %d packages, want the whole module", len(pkgs))
	}
	for _, p := range checkLayers(layers(), pkgs) {
		t.Error(p)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, _ := strings.Cut(string(readme), "\n## Layout\n")
	layout, _, _ = strings.Cut(layout, "\n## ")
	for _, p := range pkgs {
		if !namedIn(layout, p.path) {
			t.Errorf("README \"Layout\" does not name package %s: add it to the table, with what it owns", p.path)
		}
	}
}

// namedIn reports whether the README section names package p: as `p`, a
// watcher type by its last element; helpers (internal/…) need not be.
func namedIn(section, p string) bool {
	switch {
	case p == "internal" || strings.HasPrefix(p, "internal/") || strings.Contains(p, "/internal/"):
		return true
	case strings.Contains(section, "`"+p+"`"):
		return true
	}
	return strings.HasPrefix(p, "watchers/") && strings.Contains(section, "`"+path.Base(p)+"`")
}

// inModule returns p relative to the module, or "" for another module.
func inModule(p string) string {
	if rest, ok := strings.CutPrefix(p, module+"/"); ok {
		return rest
	}
	return ""
}

// ownPaths returns the module's packages among the space-separated paths.
func ownPaths(list string) []string {
	var out []string
	for p := range strings.FieldsSeq(list) {
		if q := inModule(p); q != "" {
			out = append(out, q)
		}
	}
	return out
}

// place returns the index of the layer that holds p: the row naming it, or
// the one row whose pattern matches it; -1 when none does or several
// patterns do.
func place(ls []layer, p string) int {
	matched := -1
	for i, l := range ls {
		for _, q := range l.pkgs {
			if q == p {
				return i
			}
			if ok, _ := path.Match(q, p); ok && strings.ContainsAny(q, "*?[") {
				if matched >= 0 && matched != i {
					return -1
				}
				matched = i
			}
		}
	}
	return matched
}

// checkLayers returns every problem of pkgs against the table ls.
func checkLayers(ls []layer, pkgs []pkgInfo) []string {
	var problems []string
	where := func(i int) string {
		return fmt.Sprintf("floor %d %s, row %d", ls[i].floor, floorNames[ls[i].floor], i)
	}
	for _, p := range pkgs {
		i := place(ls, p.path)
		if i < 0 {
			problems = append(problems, fmt.Sprintf("package %s is on no floor: add it to layers() in layers_test.go, on its floor of README \"Layout\" "+
				"(0 helpers under internal/, 1 model, 2 plugins, 3 node, 4 reports, 5 operator, 6 binary) after the packages it imports, and name it in README \"Layout\"", p.path))
			continue
		}
		for _, d := range p.imports {
			j := place(ls, d)
			switch {
			case j < 0:
				continue // reported as a package of its own
			case j < i, j == i && ls[i].peers:
				continue
			}
			problems = append(problems, fmt.Sprintf("%s (%s) imports %s (%s): a package imports only the rows before its own in layers_test.go "+
				"(lower floors, earlier rows of its floor); move the shared code down, or the importer up", p.path, where(i), d, where(j)))
		}
		for _, n := range ls[i].never {
			if slices.Contains(p.deps, n) {
				problems = append(problems, fmt.Sprintf("%s depends on %s (directly or not), which it must not: %s", p.path, n, ls[i].why))
			}
		}
	}
	return problems
}

// TestCheckLayers: the checker reports an unplaced package, an import up
// or across, and a forbidden dependency, each naming the packages.
func TestCheckLayers(t *testing.T) {
	ls := []layer{
		{floor: 0, pkgs: []string{"internal/*"}, peers: true},
		{floor: 1, pkgs: []string{"spec"}},
		{floor: 1, pkgs: []string{"watchers"}, never: []string{"spec"}, why: "no specs"},
		{floor: 2, pkgs: []string{"watchers/render"}},
		{floor: 2, pkgs: []string{"watchers/*"}},
		{floor: 3, pkgs: []string{"manager", "agent"}},
	}
	tests := []struct {
		name string
		pkgs []pkgInfo
		want []string // substrings, one per problem
	}{
		{"every import points down", []pkgInfo{
			{path: "internal/a", imports: []string{"internal/b"}},
			{path: "spec", imports: []string{"internal/a"}},
			{path: "watchers/exec", imports: []string{"watchers", "watchers/render", "spec"}},
			{path: "agent", imports: []string{"watchers/exec"}},
		}, nil},
		{"a new package", []pkgInfo{{path: "fleet"}}, []string{"package fleet is on no floor: add it to layers() in layers_test.go"}},
		{"a nested one", []pkgInfo{{path: "internal/a/b"}}, []string{"package internal/a/b is on no floor"}},
		{"up a floor", []pkgInfo{{path: "spec", imports: []string{"agent"}}}, []string{"spec (floor 1 model, row 1) imports agent (floor 3 node, row 5)"}},
		{"a helper into the domain", []pkgInfo{{path: "internal/a", imports: []string{"spec"}}}, []string{"internal/a (floor 0 helpers, row 0) imports spec"}},
		{"one watcher type into another", []pkgInfo{{path: "watchers/exec", imports: []string{"watchers/kv"}}}, []string{"watchers/exec (floor 2 plugins, row 4) imports watchers/kv (floor 2 plugins, row 4)"}},
		{"across a row without peers", []pkgInfo{{path: "agent", imports: []string{"manager"}}}, []string{"agent (floor 3 node, row 5) imports manager"}},
		{"a forbidden dependency", []pkgInfo{{path: "watchers", deps: []string{"internal/a", "spec"}}}, []string{"watchers depends on spec (directly or not), which it must not: no specs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkLayers(ls, tt.pkgs)
			if len(got) != len(tt.want) {
				t.Fatalf("checkLayers() = %q, want %d problems", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
