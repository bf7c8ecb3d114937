package command

import (
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/mms-io/mms/watchers/render"
)

// CheckLine checks a watcher's command line for Validate: a template (see
// [render.Has]) is only parsed, with the watcher's own functions extra, and
// checked as [RenderLine] needs it (quotes closed within branches, no
// action after a backslash); its words are nil (they are known once it is
// rendered). Any other line is split with [Split].
func CheckLine(line string, extra ...template.FuncMap) ([]string, error) {
	if !render.Has(line) {
		return Split(line)
	}
	t, err := render.Parse(line, extra...)
	if err != nil {
		return nil, err
	}
	if err := quoteActions(t); err != nil {
		return nil, fmt.Errorf("template %q: %w", line, err)
	}
	return nil, nil
}

// shellOperators are words that do something in a shell but are passed
// literally by Split. Unquoted, they almost certainly mean the author
// expected a shell, so they are rejected.
var shellOperators = map[string]bool{
	"|": true, "||": true, "&": true, "&&": true, ";": true, ";;": true,
	"<": true, "<<": true, ">": true, ">>": true, "2>": true, "2>>": true,
	"&>": true, "2>&1": true, ">&2": true, "$(": true, "`": true,
}

// Split splits s into words the way a POSIX shell splits a simple
// command, without expanding anything: blanks separate words; 'single
// quotes' keep everything literally; "double quotes" keep everything but
// a backslash before $ ` " \ or a newline; outside quotes a backslash keeps
// the next character literally and backslash-newline is removed. Variables,
// globs, ~ and redirections are not interpreted, and an unquoted word that
// is a shell operator (| ; > && …) is an error.
func Split(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool // cur holds a word, possibly empty ("")
		literal bool // some part of the current word was quoted or escaped
	)
	end := func() error {
		if !inWord {
			return nil
		}
		w := cur.String()
		if !literal && shellOperators[w] {
			return fmt.Errorf("shell operator %q: commands run without a shell; quote it to pass it literally, or run sh -c '…'", w)
		}
		words = append(words, w)
		cur.Reset()
		inWord, literal = false, false
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if err := end(); err != nil {
				return nil, err
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			if s[i] == '\n' {
				continue // line continuation
			}
			cur.WriteByte(s[i])
			inWord, literal = true, true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote at offset %d", i)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord, literal = true, true
		case c == '"':
			start := i
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
					if s[i] != '\n' {
						cur.WriteByte(s[i])
					}
					continue
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf("unterminated double quote at offset %d", start)
			}
			inWord, literal = true, true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if err := end(); err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errors.New("no words")
	}
	return words, nil
}
