package spec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// testEnv is a node called web1.example.net with facter installed.
func testEnv() *Env {
	files := fstest.MapFS{
		"usr/bin/facter":     {Mode: 0o755},
		"usr/bin/notexec":    {Mode: 0o644},
		"usr/bin/dir":        {Mode: fs.ModeDir | 0o755},
		"opt/tool":           {Mode: 0o700},
		"etc/motd":           {Mode: 0o644},
		"etc/ssh/sshd.conf":  {Mode: 0o600},
		"secret/forbidden/x": {Mode: 0o600},
	}
	return &Env{
		Identity: "web1.example.net",
		Path:     "/usr/local/bin:relative/bin::/usr/bin",
		Facts: map[string]any{
			"os":    map[string]any{"family": "debian", "release": map[string]any{"major": 12.0}},
			"cpus":  4.0,
			"disks": []any{map[string]any{"size": 100.0}},
			"role":  "^web",
		},
		Stat: func(name string) (fs.FileInfo, error) {
			if strings.HasPrefix(name, "/secret/") {
				return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrPermission}
			}
			return fs.Stat(files, strings.TrimPrefix(name, "/"))
		},
	}
}

type compileCase struct {
	name, src, err string
}

// compileCases is the table of matchers that do not compile;
// FuzzCompileMatcher is seeded from it.
func compileCases() []compileCase {
	deep := strings.Repeat("1+", 2000) + "1 > 0"
	return []compileCase{
		{name: "unknown name", src: "identity('^web') && hsa_command('facter')", err: `match: column 21: unknown name hsa_command; did you mean "has_command"?`},
		{name: "unknown variable", src: "node == 'web'", err: `match: column 1: unknown name node`},
		{name: "wrong argument type", src: "has_file(1)", err: `match: column 10: cannot use int as argument (type string) to call has_file `},
		{name: "too few arguments", src: "has_directory()", err: `match: column 1: not enough arguments to call has_directory`},
		{name: "too many arguments", src: "identity('a', 'b')", err: `match: column 1: too many arguments to call identity`},
		{name: "not boolean", src: "len(facts) + 1", err: `match: expected bool, but got int`},
		{name: "syntax error", src: "identity('^web') &&", err: `match: column 19: unexpected token EOF`},
		{name: "syntax error on line 2", src: "identity('^web')\n&& )", err: `match: line 2, column 4: unexpected token Bracket(")")`},
		{name: "bad literal regexp", src: "identity('^web') || identity('db[')", err: `match: column 30: identity: invalid regular expression "db[": missing closing ]`},
		{name: "hidden field", src: "env != nil", err: `match: column 1: unknown name env`},
		{name: "too long", src: strings.Repeat("true && ", 512) + "true", err: `match: expression is 4100 bytes long; the limit is 4096`},
		{name: "too many nodes", src: deep, err: `match: column 1026: expression too complex: more than 1024 nodes`},
	}
}

func TestCompileMatcherErrors(t *testing.T) {
	for _, tt := range compileCases() {
		t.Run(tt.name, func(t *testing.T) {
			m, err := CompileMatcher(tt.src)
			if m != nil {
				t.Errorf("CompileMatcher(%q) = %v, want nil", tt.src, m)
			}
			checkErrors(t, fmt.Sprintf("CompileMatcher(%.40q)", tt.src), err, []string{tt.err})
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  *Env // nil: testEnv()
		want bool
		err  string
	}{
		{name: "empty matches", src: "", want: true},
		{name: "blank matches", src: " \n\t", want: true},
		{name: "identity", src: "identity('^web')", want: true},
		{name: "identity no match", src: "identity('^db')", want: false},
		{name: "identity from a fact", src: "identity(facts.role)", want: true},
		{name: "identity through a pipe", src: "'example\\\\.net$' | identity()", want: true},
		{name: "choria README matcher", src: "identity('^web') && has_command('facter')", want: true},
		{name: "has_command searches PATH", src: "has_command('facter')", want: true},
		{name: "has_command needs an execute bit", src: "has_command('notexec')", want: false},
		{name: "has_command needs a regular file", src: "has_command('dir')", want: false},
		{name: "has_command skips relative PATH entries", src: "has_command('tool')", env: &Env{Path: "opt:.", Stat: testEnv().Stat}, want: false},
		{name: "has_command with a path", src: "has_command('/opt/tool')", want: true},
		{name: "has_command empty", src: "has_command('')", want: false},
		{name: "has_file", src: "has_file('/etc/motd') && has_file('/etc/ssh/sshd.conf')", want: true},
		{name: "has_file is false for a directory", src: "has_file('/etc')", want: false},
		{name: "has_file missing", src: "has_file('/etc/nope')", want: false},
		{name: "has_directory", src: "has_directory('/etc/ssh') && !has_directory('/etc/motd')", want: true},
		{name: "no Stat means no files", src: "has_file('/etc/motd') || has_directory('/etc') || has_command('facter')", env: &Env{Path: "/usr/bin"}, want: false},
		{name: "permission denied is an error", src: "has_file('/secret/forbidden/x')",
			err: `evaluate matcher "has_file('/secret/forbidden/x')": column 1: has_file("/secret/forbidden/x"): stat /secret/forbidden/x: permission denied`},
		{name: "facts member", src: "facts.os.family == 'debian' && facts.os.release.major >= 12", want: true},
		{name: "facts index", src: "facts.os['family'] == 'debian' && facts.disks[0].size == 100", want: true},
		{name: "missing fact compares unequal", src: "facts.nope.deeper.still == 'x'", want: false},
		{name: "missing fact is nil", src: "facts.nope.deeper == nil && facts.nope == nil", want: true},
		{name: "missing fact with default", src: "(facts.nope.cpus ?? 1) < 2", want: true},
		{name: "missing fact alone is false", src: "facts.nope.flag", want: false},
		{name: "no facts at all", src: "facts.os.family == nil && get_fact('os.family') == nil", env: &Env{}, want: true},
		{name: "missing fact with in", src: "facts.nope in ['a'] || 'a' in facts.nope", want: false},
		{name: "missing fact with string operators", src: "facts.nope matches '^a' || facts.nope startsWith 'a' || facts.nope contains 'a'", want: false},
		{name: "missing fact is not equal", src: "facts.nope != 'a'", want: true},
		{name: "missing fact negated", src: "not facts.nope", err: `evaluate matcher "not facts.nope": column 1: interface conversion: interface {} is nil, not bool`},
		{name: "missing fact length", src: "len(facts.nope) == 0", err: `evaluate matcher "len(facts.nope) == 0": column 1: invalid argument for len (type <nil>)`},
		{name: "missing fact in arithmetic", src: "facts.nope + 1 == 2", err: `evaluate matcher "facts.nope + 1 == 2": column 12: invalid operation: <nil> + int`},
		{name: "missing fact ordered", src: "facts.nope > 1", err: `evaluate matcher "facts.nope > 1": column 12: invalid operation: <nil> > int`},
		{name: "member of a string", src: "facts.os.family.name == 'x'", err: `evaluate matcher "facts.os.family.name == 'x'": column 17: invalid operation: int(string)`},
		{name: "index out of range", src: "facts.disks[3].size == 1", err: `evaluate matcher "facts.disks[3].size == 1": column 12: index out of range: 3 (array length is 1)`},
		{name: "non-boolean fact result", src: "facts.os.family", err: `evaluate matcher "facts.os.family": the result is a string, want true or false`},
		{name: "get_fact", src: "get_fact('os.release.major') == 12 && get_fact('disks.0.size') == 100", want: true},
		{name: "get_fact missing", src: "get_fact('disks.3.size') == nil && get_fact('os.family.x') == nil", want: true},
		{name: "identity of a non-string", src: "identity(facts.cpus)", err: `evaluate matcher "identity(facts.cpus)": column 1: identity: want a string argument, got a number`},
		{name: "identity of a bad run-time pattern", src: "identity(facts.os.family + '(')", err: `evaluate matcher "identity(facts.os.family + '(')": column 1: identity: invalid regular expression "debian(": missing closing )`},
		{name: "builtins", src: "len(facts.disks) == 1 && upper(facts.os.family) == 'DEBIAN'", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := CompileMatcher(tt.src)
			if err != nil {
				t.Fatalf("CompileMatcher(%q) err = %v", tt.src, err)
			}
			env := tt.env
			if env == nil {
				env = testEnv()
			}
			got, err := m.Match(env)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Match(%q) = %v, %v, want error %s", tt.src, got, err, tt.err)
				}
				if got {
					t.Errorf("Match(%q) = true with an error, want false", tt.src)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Match(%q) = %v, %v, want %v, nil", tt.src, got, err, tt.want)
			}
		})
	}
}

func TestMatchPermissionErrorUnwraps(t *testing.T) {
	m, err := CompileMatcher("has_directory('/secret/forbidden')")
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Match(testEnv())
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Match() err = %v, want one wrapping fs.ErrPermission", err)
	}
}

func TestNilMatcherAndEnv(t *testing.T) {
	var m *Matcher
	if ok, err := m.Match(testEnv()); !ok || err != nil {
		t.Errorf("(*Matcher)(nil).Match() = %v, %v, want true, nil", ok, err)
	}
	if got := m.String(); got != "" {
		t.Errorf("(*Matcher)(nil).String() = %q, want empty", got)
	}
	m, err := CompileMatcher("!identity('.') && !has_file('/x')")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Match(nil); !ok || err != nil {
		t.Errorf("Match(nil) = %v, %v, want true, nil", ok, err)
	}
	if got, want := m.String(), "!identity('.') && !has_file('/x')"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCompileMatchers(t *testing.T) {
	ms := []Machine{{Name: "web", Match: "identity('^web')"}, {Name: "all"}, {Name: "db", Match: "identity('^db')"}}
	got, err := CompileMatchers(ms)
	if err != nil {
		t.Fatalf("CompileMatchers() err = %v", err)
	}
	if len(got) != len(ms) {
		t.Fatalf("CompileMatchers() returned %d matchers, want %d", len(got), len(ms))
	}
	for i, want := range []bool{true, true, false} {
		if ok, err := got[i].Match(testEnv()); ok != want || err != nil {
			t.Errorf("matcher %d (%q).Match() = %v, %v, want %v, nil", i, ms[i].Match, ok, err, want)
		}
	}

	ms = append(ms, Machine{Name: "x", Match: "nope"}, Machine{Match: "1"})
	got, err = CompileMatchers(ms)
	if got != nil {
		t.Errorf("CompileMatchers(bad) = %v, want nil", got)
	}
	checkErrors(t, "CompileMatchers(bad)", err, []string{
		`machine[3] "x": match: column 1: unknown name nope`,
		`machine[4]: match: expected bool, but got int`,
	})
}

// TestRunTimePatternCache checks that patterns computed at run time are
// cached per matcher, up to the bound, and that concurrent use is safe
// (run with -race).
func TestRunTimePatternCache(t *testing.T) {
	m, err := CompileMatcher("identity(get_fact('p'))")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2 * maxDynamicRegexps {
				env := &Env{Identity: "n5", Facts: map[string]any{"p": fmt.Sprintf("^n%d$", (i+g)%(2*maxDynamicRegexps))}}
				want := (i+g)%(2*maxDynamicRegexps) == 5
				if ok, err := m.Match(env); ok != want || err != nil {
					t.Errorf("Match(p=%v) = %v, %v, want %v, nil", env.Facts["p"], ok, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	m.mu.Lock()
	n := len(m.dynamic)
	m.mu.Unlock()
	if n != maxDynamicRegexps {
		t.Errorf("cached %d run-time patterns, want the bound %d", n, maxDynamicRegexps)
	}
}

// TestLiteralPatternsCompiledOnce checks that literal identity() patterns are
// compiled with the expression, not at run time.
func TestLiteralPatternsCompiledOnce(t *testing.T) {
	m, err := CompileMatcher("identity('^web') || identity('^db') || identity('^web')")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(m.literals); got != 2 {
		t.Errorf("compiled %d literal patterns, want 2", got)
	}
	if _, err := m.Match(testEnv()); err != nil {
		t.Fatal(err)
	}
	if m.dynamic != nil {
		t.Errorf("run-time cache = %v after literal-only matches, want nil", m.dynamic)
	}
}

func BenchmarkCompileMatcher(b *testing.B) {
	for b.Loop() {
		if _, err := CompileMatcher("identity('^web') && has_command('facter') && facts.os.family == 'debian'"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, bm := range []struct{ name, src string }{
		{"identity", "identity('^web')"},
		{"choria", "identity('^web') && has_command('facter')"},
		{"facts", "facts.os.family == 'debian' && get_fact('os.release.major') >= 12"},
		{"empty", ""},
	} {
		b.Run(bm.name, func(b *testing.B) {
			m, err := CompileMatcher(bm.src)
			if err != nil {
				b.Fatal(err)
			}
			env := testEnv()
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := m.Match(env); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

func TestIdentityLiteral(t *testing.T) {
	for _, tt := range []struct {
		src, want string
		ok        bool
	}{
		{`identity('^edge-00001[.]')`, `^edge-00001[.]`, true},
		{` identity ( "^web" ) `, `^web`, true},
		{"\tidentity(\n'web'\r)\n", `web`, true},
		{`identity('')`, ``, true},
		{`identity('^web\\d')`, ``, false}, // an escape: expr's job
		{`identity("it's")`, ``, false},
		{`identity('a') && true`, ``, false},
		{`!identity('a')`, ``, false},
		{`identity('a'))`, ``, false},
		{`identity('a'`, ``, false},
		{`identity('a")`, ``, false},
		{`identity(x)`, ``, false},
		{`identities('a')`, ``, false},
		{`identity('é')`, ``, false},
		{`has_command('a')`, ``, false},
	} {
		got, ok := identityLiteral(tt.src)
		if got != tt.want || ok != tt.ok {
			t.Errorf("identityLiteral(%q) = %q, %v, want %q, %v", tt.src, got, ok, tt.want, tt.ok)
		}
	}
}

// TestIdentityMatcherLikeExpr: a matcher that is only identity('…') is
// matched without expr, with expr's answers: the same matches, the same
// compile errors (an invalid pattern goes through expr, which reports it).
func TestIdentityMatcherLikeExpr(t *testing.T) {
	identities := []string{"", "web1", "web1.example.net", "edge-00001.dc", "edge-000010.dc", "db"}
	for _, src := range []string{`identity('^web')`, `identity("^edge-00001[.]")`, `identity('')`, `identity('b$')`, ` identity ( '.' ) `} {
		fast, err := CompileMatcher(src)
		if err != nil {
			t.Fatal(err)
		}
		if fast.ident == nil || fast.program != nil {
			t.Fatalf("CompileMatcher(%q) went through expr", src)
		}
		slow, err := compileExpr(&Matcher{src: src}, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range identities {
			env := &Env{Identity: id}
			f, ferr := fast.Match(env)
			s, serr := slow.Match(env)
			if f != s || ferr != nil || serr != nil {
				t.Errorf("%s on %q: without expr %v, %v; with expr %v, %v", src, id, f, ferr, s, serr)
			}
		}
	}
	_, ferr := CompileMatcher(`identity('[')`)
	_, serr := compileExpr(&Matcher{src: `identity('[')`}, `identity('[')`)
	if ferr == nil || serr == nil || !strings.Contains(ferr.Error(), serr.Error()) {
		t.Errorf("an invalid pattern: %v, want expr's %v", ferr, serr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m, _ := CompileMatcher(`identity('^web')`)
	if ok, err := m.MatchContext(ctx, &Env{Identity: "web1"}, 0); ok || err == nil {
		t.Errorf("a cancelled evaluation = %v, %v, want an error", ok, err)
	}
}

func BenchmarkCompileMatcherIdentity(b *testing.B) {
	for b.Loop() {
		if _, err := CompileMatcher("identity('^edge-00001[.]')"); err != nil {
			b.Fatal(err)
		}
	}
}
