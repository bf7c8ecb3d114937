package spec

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/mms-io/mms/internal/suggest"
)

// matchPatcher rewrites a parsed matcher before it is type-checked:
//
//   - probe(args) becomes probe($env, args), so the probe functions see the
//     per-run environment without a closure per run;
//   - identity("literal") has its pattern compiled now (errors are compile
//     errors);
//   - every member access rooted at facts becomes optional (facts?.a?.b).
type matchPatcher struct {
	src      string
	literals map[string]*regexp.Regexp
	err      error // the first invalid literal pattern
}

// Visit implements ast.Visitor.
func (p *matchPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || !isProbe(id.Value) {
			return
		}
		if id.Value == "identity" && len(n.Arguments) == 1 {
			p.literal(n.Arguments[0])
		}
		ast.Patch(node, &ast.CallNode{
			Callee:    n.Callee,
			Arguments: append([]ast.Node{&ast.IdentifierNode{Value: "$env"}}, n.Arguments...),
		})
	case *ast.PredicateNode:
		// Every loop iteration ticks the evaluation's budget first.
		n.Node = &ast.SequenceNode{Nodes: []ast.Node{tickCall(), n.Node}}
	case *ast.BinaryNode:
		if n.Operator != "matches" {
			return
		}
		if _, literal := n.Right.(*ast.StringNode); literal {
			return // compiled once, with the expression
		}
		// A computed pattern would be compiled on every evaluation by
		// expr itself, unbounded: use the matcher's bounded cache and
		// tick the budget instead.
		ast.Patch(node, &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: matchesFunc},
			Arguments: []ast.Node{&ast.IdentifierNode{Value: "$env"}, n.Left, n.Right},
		})
	case *ast.MemberNode:
		if n.Method || !rootedAtFacts(n.Node) {
			return
		}
		n.Optional = true
		ast.Patch(node, &ast.ChainNode{Node: n})
	}
}

// The hidden functions the patcher calls. Their names cannot be written
// in an expression (the parser has no "$" in identifiers).
const (
	// tickFunc ticks the evaluation's budget (see budget).
	tickFunc = "$mms_tick"
	// matchesFunc is "matches" with a computed pattern.
	matchesFunc = "$mms_matches"
)

// tickCall is a call of tickFunc with the hidden environment.
func tickCall() ast.Node {
	return &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: tickFunc},
		Arguments: []ast.Node{&ast.IdentifierNode{Value: "$env"}},
	}
}

// literal compiles a string-literal identity() pattern.
func (p *matchPatcher) literal(arg ast.Node) {
	s, ok := arg.(*ast.StringNode)
	if !ok {
		return
	}
	if _, done := p.literals[s.Value]; done {
		return
	}
	re, err := compileRegexp("identity", s.Value)
	if err != nil {
		if p.err == nil {
			fe := &file.Error{Location: arg.Location(), Message: err.Error()}
			p.err = exprError(p.src, fe.Bind(file.NewSource(p.src)))
		}
		return
	}
	if p.literals == nil {
		p.literals = make(map[string]*regexp.Regexp)
	}
	p.literals[s.Value] = re
}

// rootedAtFacts reports whether a member chain starts at the facts variable.
func rootedAtFacts(n ast.Node) bool {
	for {
		switch x := n.(type) {
		case *ast.MemberNode:
			n = x.Node
		case *ast.ChainNode:
			n = x.Node
		case *ast.IdentifierNode:
			return x.Value == "facts"
		default:
			return false
		}
	}
}

// posError is an expression error at a position.
type posError struct {
	pos   string // "column 3" or "line 2, column 3"
	msg   string
	cause error
}

func (e *posError) Error() string { return e.pos + ": " + e.msg }
func (e *posError) Unwrap() error { return e.cause }

// exprError rewrites an expr error as one line with its position, since
// expr's own text spans several lines (a source snippet with a caret).
func exprError(src string, err error) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	pos := "column " + strconv.Itoa(fe.Column+1)
	if strings.Contains(src, "\n") {
		pos = "line " + strconv.Itoa(fe.Line) + ", " + pos
	}
	msg := fe.Message
	if strings.Contains(msg, "exceeds maximum allowed nodes") {
		msg = fmt.Sprintf("expression too complex: more than %d nodes", MaxMatcherNodes)
	}
	if name, ok := strings.CutPrefix(msg, "unknown name "); ok {
		// The names a matcher may use.
		msg += suggest.Hint(name, []string{"identity", "has_file", "has_directory", "has_command", "get_fact", "facts"})
	}
	return &posError{pos: pos, msg: msg, cause: fe.Prev}
}
