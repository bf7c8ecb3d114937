package spec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Bounds on matcher expressions, so hostile input compiles in bounded time
// and memory.
const (
	// MaxMatcherLength is the longest expression CompileMatcher accepts, in bytes.
	MaxMatcherLength = 4096
	// MaxMatcherNodes is the largest syntax tree CompileMatcher accepts.
	MaxMatcherNodes = 1024
	// maxDynamicRegexps bounds the per-matcher cache of identity() patterns
	// computed at run time; beyond it patterns are compiled on every call.
	maxDynamicRegexps = 64
	// castPrefix starts the message of expr's run-time cast of a
	// non-boolean result (expr.AsBool on a value of unknown type).
	castPrefix = "invalid operation: bool("
	// DefaultMatchTimeout bounds one evaluation of a matcher (see
	// [Matcher.MatchContext]). Real matchers run in well under a
	// millisecond; the bound is wall-clock time, so it is generous enough
	// that a busy node (garbage collection, other work on its cores) never
	// fails a real matcher, and small enough that a hostile one costs at
	// most a second per entry.
	DefaultMatchTimeout = time.Second
)

// ErrMatchTimeout is wrapped by the error of a matcher evaluation that ran
// out of time (see [Matcher.MatchContext]).
var ErrMatchTimeout = errors.New("matcher ran out of time")

// Env is what a matcher sees of the node. The zero value is a node with no
// identity, no facts and no files.
type Env struct {
	// Identity is the node identity identity() matches against.
	Identity string
	// Facts are the node facts, as [ParseFacts] returns them: nested
	// map[string]any and []any values.
	Facts map[string]any
	// Path is the PATH list has_command() searches, separated by
	// [filepath.ListSeparator].
	Path string
	// Stat reports on a file the way [os.Stat] does (following symlinks);
	// the agent injects os.Stat. Nil means no file exists.
	Stat func(name string) (fs.FileInfo, error)
}

// Matcher is a compiled match expression, safe for concurrent use: after
// [CompileMatcher] its only mutable part is the run-time pattern cache,
// guarded by a lock. A nil *Matcher, like an empty expression, matches every
// node.
//
// Compile a spec's matchers once, when the spec is accepted (see
// [CompileMatchers]), and keep them with it: Match only runs the compiled
// program. identity() patterns written as string literals are compiled with
// the expression; patterns computed at run time are cached in the Matcher
// (never globally), up to a small bound.
type Matcher struct {
	src     string
	program *vm.Program // nil: matches everything, unless identityRe is set
	// ident is set for a matcher that is only identity('…') with a
	// literal pattern, the most common kind, which is matched without
	// expr (see identityLiteral); program is nil then.
	ident *identityMatcher
	// literals holds the identity() patterns known at compile time; it is
	// never written after CompileMatcher returns.
	literals map[string]*regexp.Regexp

	mu      sync.Mutex
	dynamic map[string]*regexp.Regexp // guarded by mu
}

// exprEnv is the environment expressions are compiled against and run in.
// Only facts is visible to expressions; the probe functions receive the
// whole value as their hidden first argument (see matchPatcher).
type exprEnv struct {
	Facts  map[string]any `expr:"facts"`
	env    *Env
	budget budget
}

// budget bounds the work of one evaluation. expr's virtual machine has no
// timeout or cancellation, and one matcher can loop over a range a million
// long or compile a million regular expressions. The patcher therefore
// makes every loop iteration (every predicate of all, any, filter, map,
// reduce, …), every probe call and every matches with a computed pattern
// call tick, which fails the evaluation once the deadline has passed or
// the context is done. Between two ticks an evaluation does a bounded
// amount of work (the expression has at most MaxMatcherNodes nodes and
// expr's memory budget caps every value it builds), so the deadline holds
// to within that work.
type budget struct {
	ctx      context.Context
	deadline time.Time
	timeout  time.Duration
	n        uint32
}

// tick returns an error once the budget is spent. The zero budget (no
// context) never is.
func (b *budget) tick() error {
	if b.ctx == nil {
		return nil
	}
	b.n++
	if b.n%16 != 1 { // the clock and ctx every 16 ticks: cheap, and soon enough
		return nil
	}
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("evaluation cancelled: %w", context.Cause(b.ctx))
	}
	if time.Now().After(b.deadline) {
		return fmt.Errorf("%w: stopped after %s", ErrMatchTimeout, b.timeout)
	}
	return nil
}

// CompileMatcher compiles a match expression. The expression must be
// boolean; it may use:
//
//   - identity(re): re (Go regexp syntax) matches [Env.Identity]. A literal
//     pattern that does not compile is a compile error.
//   - has_file(path), has_directory(path): path is a regular file or a
//     directory ([Env.Stat] follows symlinks). A missing path, or any stat
//     error other than permission denied, is false; permission denied is an
//     error, because the node cannot tell.
//   - has_command(name): an executable regular file called name is in one of
//     the absolute directories of [Env.Path] (relative entries are skipped,
//     like exec.LookPath does); a name containing "/" is checked directly.
//   - get_fact(path): the fact at a dotted path ("os.family", "disks.0.size";
//     numeric segments index lists), or nil if any segment is missing.
//   - facts: the fact map, e.g. facts.os.family == "debian". Member access on
//     facts is nil-safe: a missing key yields nil, and so does any member of
//     nil (facts.a.b.c is nil when facts.a is missing). A missing fact is
//     therefore false under ==, in, matches, startsWith, endsWith and
//     contains, and true under != and == nil. Ordering (facts.cpus > 2),
//     arithmetic, len() and ! or not on a missing fact are run-time errors;
//     guard them with ??, e.g. (facts.cpus ?? 0) > 2. A list index out of
//     range and a member of a non-map value (a string, a number) are run-time
//     errors too; get_fact returns nil for both.
//   - expr's built-in functions and operators.
//
// Unknown names, wrong argument types and results that cannot be boolean are
// compile errors. A result of unknown type (a fact) must be true, false or
// nil at run time; nil (a missing fact) is false. An empty (or all-space)
// expression matches every node. Errors wrap [ErrInvalid] and give the
// column of the problem.
func CompileMatcher(src string) (*Matcher, error) {
	m, err := compileMatcher(src)
	if err != nil {
		return nil, &FieldError{Field: "match", Err: err}
	}
	return m, nil
}

// CompileMatchers compiles the matcher of every entry of ms; the result is
// index-aligned with ms. Problems are named like validation problems
// (`machine[1] "web": match: …`), all of them at once; on any problem the
// result is nil, so a broken matcher can never silently match.
func CompileMatchers(ms []Machine) ([]*Matcher, error) {
	out := make([]*Matcher, len(ms))
	var errs []error
	for i := range ms {
		m, err := compileMatcher(ms[i].Match)
		if err != nil {
			errs = append(errs, &FieldError{Entry: entryName(i, ms[i].Name), Field: "match", Err: err})
			continue
		}
		out[i] = m
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// compileMatcher compiles src; its errors carry no field name.
func compileMatcher(src string) (*Matcher, error) {
	m := &Matcher{src: src}
	if strings.TrimSpace(src) == "" {
		return m, nil
	}
	if len(src) > MaxMatcherLength {
		return nil, fmt.Errorf("expression is %d bytes long; the limit is %d", len(src), MaxMatcherLength)
	}
	if pattern, ok := identityLiteral(src); ok {
		// What expr would compile to a call of identity with this
		// literal, without expr: compiling it costs more than the rest
		// of planning an entry. A pattern that does not parse goes the
		// long way, which reports it.
		if im, ok := newIdentityMatcher(pattern); ok {
			m.ident = im
			return m, nil
		}
	}
	return compileExpr(m, src)
}

// compileExpr compiles src with expr into m.
func compileExpr(m *Matcher, src string) (*Matcher, error) {
	p := &matchPatcher{src: src}
	probe := func(name string, fn func(m *Matcher, env *Env, arg string) (any, error)) expr.Option {
		sig := any(new(func(any, string) (bool, error)))
		if name == "get_fact" {
			sig = new(func(any, string) any)
		}
		return expr.Function(name, func(params ...any) (any, error) {
			e, ok := params[0].(*exprEnv)
			if !ok || len(params) != 2 {
				return nil, fmt.Errorf("%s: internal error: unexpected arguments", name)
			}
			if err := e.budget.tick(); err != nil {
				return nil, err
			}
			arg, ok := params[1].(string)
			if !ok {
				return nil, fmt.Errorf("%s: want a string argument, got %s", name, kindOf(params[1]))
			}
			return fn(m, e.env, arg)
		}, sig)
	}
	tick := expr.Function(tickFunc, func(params ...any) (any, error) {
		if e, ok := params[0].(*exprEnv); ok {
			return true, e.budget.tick()
		}
		return true, nil
	}, new(func(any) bool))
	matches := expr.Function(matchesFunc, func(params ...any) (any, error) {
		e, ok := params[0].(*exprEnv)
		if !ok || len(params) != 3 {
			return nil, fmt.Errorf("matches: internal error: unexpected arguments")
		}
		if err := e.budget.tick(); err != nil {
			return nil, err
		}
		return m.matches(params[1], params[2])
	}, new(func(any, any, any) (bool, error)))
	program, err := expr.Compile(src,
		expr.Env(exprEnv{}),
		expr.AsBool(),
		expr.MaxNodes(MaxMatcherNodes),
		expr.Patch(p),
		probe("identity", (*Matcher).identity),
		probe("has_file", hasFile),
		probe("has_directory", hasDirectory),
		probe("has_command", hasCommand),
		probe("get_fact", getFact),
		tick,
		matches,
	)
	if err != nil {
		return nil, exprError(src, err)
	}
	if p.err != nil {
		return nil, p.err
	}
	m.program = program
	m.literals = p.literals
	return m, nil
}

// identityLiteral recognizes a matcher that is nothing but identity('…')
// (or identity("…")) with a plain pattern, white space around the tokens
// allowed, and returns the pattern. It is strict: a pattern with a
// backslash, a quote, a control or non-ASCII character, or anything else
// around the call, is left to expr.
func identityLiteral(src string) (string, bool) {
	const fn = "identity"
	rest := trimSpace(src)
	var ok bool
	if rest, ok = strings.CutPrefix(rest, fn); !ok {
		return "", false
	}
	if rest, ok = strings.CutPrefix(trimSpace(rest), "("); !ok {
		return "", false
	}
	rest = trimSpace(rest)
	if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
		return "", false
	}
	quote := rest[0]
	end := strings.IndexByte(rest[1:], quote)
	if end < 0 {
		return "", false
	}
	pattern := rest[1 : 1+end]
	for i := 0; i < len(pattern); i++ {
		if c := pattern[i]; c < 0x20 || c > 0x7e || c == '\\' || c == '\'' || c == '"' {
			return "", false
		}
	}
	if trimSpace(rest[2+end:]) != ")" {
		return "", false
	}
	return pattern, true
}

// identityMatcher is identity(pattern) without expr. A spec of thousands
// of entries usually has a matcher per node or group of nodes, such as
// identity('^edge-00042[.]'), and a node is matched by few of them: the
// pattern is parsed (checked) when the matcher is compiled, and compiled
// only when an identity could match it, that is when the pattern is not
// anchored to a literal prefix (^edge-00042) that the identity lacks.
type identityMatcher struct {
	pattern string
	prefix  string // every match starts with it; "" when the pattern has no such prefix
	once    sync.Once
	re      *regexp.Regexp
	err     error
}

// newIdentityMatcher returns the matcher of pattern, or false when the
// pattern does not parse.
func newIdentityMatcher(pattern string) (*identityMatcher, bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, false
	}
	return &identityMatcher{pattern: pattern, prefix: anchoredPrefix(re)}, true
}

// anchoredPrefix returns the literal every match of re starts with when re
// is "^literal…" (the beginning of the text, then a case-sensitive
// literal), else "".
func anchoredPrefix(re *syntax.Regexp) string {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return ""
	}
	begin, lit := re.Sub[0], re.Sub[1]
	if begin.Op != syntax.OpBeginText || lit.Op != syntax.OpLiteral || lit.Flags&syntax.FoldCase != 0 {
		return ""
	}
	return string(lit.Rune)
}

// match reports whether identity matches the pattern.
func (im *identityMatcher) match(identity string) (bool, error) {
	if im.prefix != "" && !strings.HasPrefix(identity, im.prefix) {
		return false, nil
	}
	im.once.Do(func() { im.re, im.err = compileRegexp("identity", im.pattern) })
	if im.err != nil {
		return false, im.err
	}
	return im.re.MatchString(identity), nil
}

// trimSpace trims the white space expr's lexer skips between tokens.
func trimSpace(s string) string { return strings.Trim(s, " \t\r\n") }

// String returns the expression the matcher was compiled from.
func (m *Matcher) String() string {
	if m == nil {
		return ""
	}
	return m.src
}

// Match runs the matcher against a node with [DefaultMatchTimeout]; see
// [Matcher.MatchContext].
func (m *Matcher) Match(env *Env) (bool, error) {
	return m.MatchContext(context.Background(), env, 0)
}

// MatchContext runs the matcher against a node. A nil env is the zero
// [Env]. An error means the matcher could not be evaluated on this node (a
// probe was denied, a fact had the wrong type, it ran out of time or ctx
// ended); it never means "no match", and callers must not treat it as one.
//
// The evaluation stops with an error wrapping [ErrMatchTimeout] once
// timeout (0 means [DefaultMatchTimeout]) has passed, and with ctx's cause
// once ctx is done: expr has no timeout of its own, so the matcher checks
// both at every loop iteration and every probe (see budget).
func (m *Matcher) MatchContext(ctx context.Context, env *Env, timeout time.Duration) (bool, error) {
	if env == nil {
		env = &Env{}
	}
	if m != nil && m.ident != nil {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("evaluate matcher %s: evaluation cancelled: %w", quote(m.src), context.Cause(ctx))
		}
		ok, err := m.ident.match(env.Identity)
		if err != nil {
			return false, fmt.Errorf("evaluate matcher %s: %w", quote(m.src), err)
		}
		return ok, nil
	}
	if m == nil || m.program == nil {
		return true, nil
	}
	if timeout <= 0 {
		timeout = DefaultMatchTimeout
	}
	out, err := expr.Run(m.program, &exprEnv{Facts: env.Facts, env: env,
		budget: budget{ctx: ctx, deadline: time.Now().Add(timeout), timeout: timeout}})
	var fe *file.Error
	if errors.As(err, &fe) && strings.HasPrefix(fe.Message, castPrefix) {
		// expr.AsBool casts a result of unknown type (a fact) at run time.
		typ := strings.TrimSuffix(strings.TrimPrefix(fe.Message, castPrefix), ")")
		return false, fmt.Errorf("evaluate matcher %s: the result is a %s, want true or false", quote(m.src), typ)
	}
	if err != nil {
		return false, fmt.Errorf("evaluate matcher %s: %w", quote(m.src), exprError(m.src, err))
	}
	b2, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("evaluate matcher %s: the result is %s, want true or false", quote(m.src), kindOf(out))
	}
	return b2, nil
}
