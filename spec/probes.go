package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strings"
)

// identity implements identity(re).
func (m *Matcher) identity(env *Env, pattern string) (any, error) {
	re, err := m.regexp("identity", pattern)
	if err != nil {
		return nil, err
	}
	return re.MatchString(env.Identity), nil
}

// regexp returns the compiled pattern, from the literals compiled with the
// expression or from the bounded run-time cache.
func (m *Matcher) regexp(fn, pattern string) (*regexp.Regexp, error) {
	if re, ok := m.literals[pattern]; ok {
		return re, nil
	}
	m.mu.Lock()
	re, ok := m.dynamic[pattern]
	m.mu.Unlock()
	if ok {
		return re, nil
	}
	re, err := compileRegexp(fn, pattern)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.dynamic) < maxDynamicRegexps {
		if m.dynamic == nil {
			m.dynamic = make(map[string]*regexp.Regexp)
		}
		m.dynamic[pattern] = re
	}
	return re, nil
}

// compileRegexp compiles a pattern of fn (identity, matches) with a
// readable error.
func compileRegexp(fn, pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s: invalid regular expression %s: %s", fn, quote(pattern), se.Code)
		}
		return nil, fmt.Errorf("%s: invalid regular expression %s: %w", fn, quote(pattern), err)
	}
	return re, nil
}

// matches implements "matches" with a computed pattern: nil on either side
// is false (as in expr), anything but strings is an error, and the pattern
// goes through the matcher's bounded cache.
func (m *Matcher) matches(s, pattern any) (bool, error) {
	if s == nil || pattern == nil {
		return false, nil
	}
	str, ok1 := s.(string)
	pat, ok2 := pattern.(string)
	if !ok1 || !ok2 {
		return false, fmt.Errorf("matches: want strings, got %s matches %s", kindOf(s), kindOf(pattern))
	}
	re, err := m.regexp("matches", pat)
	if err != nil {
		return false, err
	}
	return re.MatchString(str), nil
}

// hasFile implements has_file(path).
func hasFile(_ *Matcher, env *Env, path string) (any, error) {
	return statMode(env, "has_file", path, fs.FileMode.IsRegular)
}

// hasDirectory implements has_directory(path).
func hasDirectory(_ *Matcher, env *Env, path string) (any, error) {
	return statMode(env, "has_directory", path, fs.FileMode.IsDir)
}

// statMode stats path and reports whether its mode satisfies want.
func statMode(env *Env, fn, path string, want func(fs.FileMode) bool) (bool, error) {
	if env.Stat == nil || path == "" {
		return false, nil
	}
	fi, err := env.Stat(path)
	switch {
	case err == nil:
		return want(fi.Mode()), nil
	case errors.Is(err, fs.ErrPermission):
		return false, fmt.Errorf("%s(%s): %w", fn, quote(path), err)
	default:
		return false, nil
	}
}

// hasCommand implements has_command(name).
func hasCommand(_ *Matcher, env *Env, name string) (any, error) {
	if env.Stat == nil || name == "" {
		return false, nil
	}
	if strings.Contains(name, "/") {
		return isExecutable(env, name), nil
	}
	for _, dir := range filepath.SplitList(env.Path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if isExecutable(env, filepath.Join(dir, name)) {
			return true, nil
		}
	}
	return false, nil
}

// isExecutable reports whether path is a regular file with an execute bit.
func isExecutable(env *Env, path string) bool {
	fi, err := env.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// getFact implements get_fact(path).
func getFact(_ *Matcher, env *Env, path string) (any, error) {
	return LookupFact(env.Facts, path), nil
}

// isProbe reports whether name is a function that receives the environment
// as a hidden first argument (see matchPatcher).
func isProbe(name string) bool {
	switch name {
	case "identity", "has_file", "has_directory", "has_command", "get_fact":
		return true
	}
	return false
}
