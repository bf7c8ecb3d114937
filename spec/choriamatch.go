package spec

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// choriaMatchEnv is what Choria's machines watcher compiles a v1 entry's
// matcher against: four functions and nothing else (no get_fact, no
// facts). The functions only give the compiler their types.
var choriaMatchEnv = map[string]any{
	"identity":      func(string) bool { return false },
	"has_file":      func(string) bool { return false },
	"has_directory": func(string) bool { return false },
	"has_command":   func(string) bool { return false },
}

// checkChoriaMatcher reports a matcher that Choria's machines watcher
// cannot compile. Choria skips such an entry with a debug log, so its
// machine never arrives and nobody is told: a v1 spec, which is written
// for Choria, must not carry one.
func checkChoriaMatcher(src string) error {
	if strings.TrimSpace(src) == "" {
		return nil
	}
	_, err := expr.Compile(src, expr.Env(choriaMatchEnv), expr.AsBool())
	if err == nil {
		return nil
	}
	if used := mmsOnlyNames(src); len(used) > 0 {
		them := "them"
		if len(used) == 1 {
			them = "it"
		}
		return fmt.Errorf("uses %s, which Choria's machines watcher cannot compile: it knows only identity(), has_file(), has_directory() and has_command(), and skips the entry without a word; drop %s from the v1 spec, or sign a v2 spec (mms agents evaluate %s)",
			strings.Join(used, " and "), them, them)
	}
	return fmt.Errorf("the machines watcher of Choria cannot compile it (%s): it knows only identity(), has_file(), has_directory() and has_command(); sign a v2 spec for mms agents", firstLine(err.Error()))
}

// mmsOnlyNames returns the names in src that mms matchers know and
// Choria's do not: get_fact() and facts, in that order, each once.
func mmsOnlyNames(src string) []string {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	v := &nameVisitor{}
	ast.Walk(&tree.Node, v)
	var out []string
	if v.getFact {
		out = append(out, "get_fact()")
	}
	if v.facts {
		out = append(out, "facts")
	}
	return out
}

// nameVisitor records uses of get_fact and facts.
type nameVisitor struct{ getFact, facts bool }

// Visit implements ast.Visitor.
func (v *nameVisitor) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		switch id.Value {
		case "get_fact":
			v.getFact = true
		case "facts":
			v.facts = true
		}
	}
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
