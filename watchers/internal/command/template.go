package command

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/mms-io/mms/watchers/render"
)

// A templated command line is split like any other (see [Split]), with
// one rule for what its template actions print: whatever a value holds
// (blanks, quotes, backslashes, shell operators, newlines), it is part of
// exactly the one word it stands in, never more. So `./check.sh --name={{
// .Data.name }}` always runs with two words however the machine data is
// written, and `{{ .Data.x }}` alone is one word (empty when x is). Values
// from machine data or facts cannot add arguments.
//
// It works on the template, not on its output: every action that prints
// gets a last command in its pipeline that quotes the value for where it
// stands in the line (outside quotes, within '…' or within "…"), so Split
// reads it back literally. Branches of if, with and range must close the
// quotes they open, and a template action may not follow a backslash.

// The quoting functions added to the template, one per place in the line.
const (
	quoteOutside = "_mms_word"
	quoteSingle  = "_mms_word_in_single_quotes"
	quoteDouble  = "_mms_word_in_double_quotes"
)

// quoteFuncs quote a printed value for Split.
var quoteFuncs = template.FuncMap{
	quoteOutside: func(v any) string { return "'" + strings.ReplaceAll(printed(v), "'", `'\''`) + "'" },
	quoteSingle:  func(v any) string { return strings.ReplaceAll(printed(v), "'", `'\''`) },
	quoteDouble: func(v any) string {
		return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(printed(v))
	},
}

// printed is v as text/template prints a value.
func printed(v any) string {
	if v == nil {
		return "<no value>"
	}
	return fmt.Sprint(v)
}

// RenderLine renders the templated command line with r and splits it into
// its words, each action's output within one word (see above). It also
// returns the words as one line for messages and events ([Join]).
func RenderLine(r *render.Renderer, line string) (argv []string, rendered string, err error) {
	t, err := r.Parse(line)
	if err != nil {
		return nil, "", err
	}
	if err := quoteActions(t); err != nil {
		return nil, "", fmt.Errorf("template %q: %w", line, err)
	}
	quoted, err := r.Execute(t, quoteFuncs)
	if err != nil {
		return nil, "", fmt.Errorf("template %q: %w", line, err)
	}
	if argv, err = Split(quoted); err != nil {
		return nil, "", fmt.Errorf("template %q renders %q: %w", line, quoted, err)
	}
	return argv, Join(argv), nil
}

// Join is argv as one line that Split reads back as argv: each word as it
// is when Split would take it so, else in single quotes.
func Join(argv []string) string {
	words := make([]string, len(argv))
	for i, w := range argv {
		if w != "" && strings.IndexFunc(w, func(r rune) bool { return !plainWordRune(r) }) < 0 && !shellOperators[w] {
			words[i] = w
			continue
		}
		words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(words, " ")
}

// plainWordRune reports whether r needs no quoting in a word.
func plainWordRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("-_./:=,@+%", r)
}

// lexState is where Split is in a line: between words, in a word outside
// quotes, inside '…', inside "…", or right after a backslash (outside
// quotes, or inside "…").
type lexState int

const (
	betweenWords lexState = iota
	inWord
	inSingle
	inDouble
	afterBackslash
	afterBackslashInDouble
)

// next is the state after the text s from state st.
func (st lexState) next(s string) lexState {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch st {
		case betweenWords, inWord:
			switch c {
			case ' ', '\t', '\n', '\r':
				st = betweenWords
			case '\\':
				st = afterBackslash
			case '\'':
				st = inSingle
			case '"':
				st = inDouble
			default:
				st = inWord
			}
		case afterBackslash:
			st = inWord
		case inSingle:
			if c == '\'' {
				st = inWord
			}
		case inDouble:
			switch c {
			case '"':
				st = inWord
			case '\\':
				st = afterBackslashInDouble
			}
		case afterBackslashInDouble:
			st = inDouble
		}
	}
	return st
}

// errBranchQuotes and errAfterBackslash are quoteActions' refusals.
var (
	errBranchQuotes   = errors.New("a branch of {{if}}, {{with}} or {{range}} leaves a quote open that it did not find open (close quotes within each branch)")
	errAfterBackslash = errors.New("a template action right after a backslash (the backslash would apply to the first character of a value)")
)

// quoteActions adds the quoting function for its place to every action of
// t that prints.
func quoteActions(t *template.Template) error {
	if t.Tree == nil || t.Tree.Root == nil {
		return nil
	}
	_, err := quoteList(t.Tree.Root, betweenWords)
	return err
}

// quoteList quotes the actions of list, entered in state st, and returns
// the state after it.
func quoteList(list *parse.ListNode, st lexState) (lexState, error) {
	if list == nil {
		return st, nil
	}
	for _, n := range list.Nodes {
		var err error
		if st, err = quoteNode(n, st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// quoteNode quotes the actions of n, entered in state st, and returns the
// state after it.
func quoteNode(n parse.Node, st lexState) (lexState, error) {
	switch n := n.(type) {
	case *parse.TextNode:
		return st.next(string(n.Text)), nil
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 { // {{ $x := … }} prints nothing
			return st, nil
		}
		var fn string
		switch st {
		case betweenWords, inWord:
			fn, st = quoteOutside, inWord
		case inSingle:
			fn = quoteSingle
		case inDouble:
			fn = quoteDouble
		default:
			return st, errAfterBackslash
		}
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{parse.NewIdentifier(fn).SetPos(n.Pos)}})
		return st, nil
	case *parse.IfNode:
		return quoteBranches(st, n.List, n.ElseList)
	case *parse.WithNode:
		return quoteBranches(st, n.List, n.ElseList)
	case *parse.RangeNode:
		return quoteBranches(st, n.List, n.ElseList)
	case *parse.TemplateNode:
		return st, errors.New("{{template}} is not allowed in a command line")
	case *parse.CommentNode, *parse.BreakNode, *parse.ContinueNode:
		return st, nil
	}
	return st, fmt.Errorf("unexpected template node %s", n)
}

// quoteBranches quotes the actions of each branch, each entered in st; a
// branch (run any number of times, or not at all) must end in st, so the
// text after it is read the same way whichever ran.
func quoteBranches(st lexState, branches ...*parse.ListNode) (lexState, error) {
	for _, b := range branches {
		end, err := quoteList(b, st)
		if err != nil {
			return st, err
		}
		if end != st && !(isOutside(end) && isOutside(st)) {
			return st, errBranchQuotes
		}
	}
	return st, nil
}

// isOutside reports whether st is outside quotes and backslashes.
func isOutside(st lexState) bool { return st == betweenWords || st == inWord }
