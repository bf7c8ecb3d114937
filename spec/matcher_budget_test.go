package spec

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// matchBounded runs m under timeout in the background and fails the test
// if the evaluation outlives hangBound: the old, unbounded evaluation of
// these matchers took from seconds to hours.
func matchBounded(t *testing.T, ctx context.Context, m *Matcher, env *Env, timeout time.Duration) (bool, error) {
	t.Helper()
	const hangBound = 20 * time.Second
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ok, err := m.MatchContext(ctx, env, timeout)
		done <- result{ok, err}
	}()
	select {
	case r := <-done:
		return r.ok, r.err
	case <-time.After(hangBound):
		t.Fatalf("matcher %s still running after %s", m, hangBound)
		return false, nil
	}
}

// TestMatcherTimeBound is issue 18.6: a matcher that would burn CPU for
// seconds (a million regular expressions compiled, a billion loop
// iterations) is stopped by its time budget with ErrMatchTimeout, and by
// its context when that ends first.
func TestMatcherTimeBound(t *testing.T) {
	list := make([]any, 1000)
	for i := range list {
		list[i] = i
	}
	env := &Env{Identity: "web1", Facts: map[string]any{"list": list}}
	tests := []struct {
		name string
		src  string
	}{
		{name: "a million computed patterns", src: `none(1..999999, "web1" matches ("^x" + string(#)))`},
		{name: "a million identity patterns", src: `none(1..999999, identity("^x" + string(#)))`},
		{name: "a billion iterations over facts", src: `all(facts.list, all(facts.list, all(facts.list, true)))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := CompileMatcher(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := matchBounded(t, t.Context(), m, env, 50*time.Millisecond)
			if ok || !errors.Is(err, ErrMatchTimeout) || !strings.Contains(err.Error(), "matcher ran out of time: stopped after 50ms") {
				t.Fatalf("Match(%s) = %v, %v, want %v", tt.src, ok, err, ErrMatchTimeout)
			}
		})
	}
	t.Run("context ends first", func(t *testing.T) {
		m, err := CompileMatcher(tests[2].src)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(errors.New("a newer spec arrived"))
		ok, err := matchBounded(t, ctx, m, env, time.Hour)
		if ok || err == nil || !strings.Contains(err.Error(), "evaluation cancelled: a newer spec arrived") {
			t.Fatalf("Match(cancelled) = %v, %v, want the cancellation", ok, err)
		}
	})
}

// TestMatchesComputedPattern: "matches" with a computed pattern keeps its
// meaning when it goes through the bounded cache.
func TestMatchesComputedPattern(t *testing.T) {
	env := &Env{Identity: "web1", Facts: map[string]any{"prefix": "we", "n": 3.0}}
	tests := []struct {
		src     string
		want    bool
		wantErr string
	}{
		{src: `"web1" matches ("^" + facts.prefix)`, want: true},
		{src: `"db1" matches ("^" + facts.prefix)`, want: false},
		{src: `"web1" matches facts.missing`, want: false},
		{src: `facts.missing matches ("^" + facts.prefix)`, want: false},
		{src: `any(["^db", "^we"], "web1" matches #)`, want: true},
		{src: `"web1" matches facts.n`, wantErr: "matches: want strings, got a string matches a number"},
		{src: `"web1" matches ("(" + facts.prefix)`, wantErr: "matches: invalid regular expression \"(we\": missing closing )"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			m, err := CompileMatcher(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Match(env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Match() = %v, %v, want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Match() = %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}
