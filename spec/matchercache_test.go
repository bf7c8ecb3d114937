package spec

import (
	"errors"
	"testing"
)

// TestMatcherCache checks that a source is compiled once while it is in
// use, that a generation nobody looked up is dropped, and that errors are
// those of CompileMatcher and never cached.
func TestMatcherCache(t *testing.T) {
	var c MatcherCache
	web, err := c.Compile("identity('^web')")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Compile("identity('^web')"); again != web {
		t.Errorf("second Compile of one source compiled it again")
	}
	c.Next()
	if kept, _ := c.Compile("identity('^web')"); kept != web {
		t.Errorf("Compile after Next did not reuse the previous generation's matcher")
	}
	db, _ := c.Compile("identity('^db')")
	c.Next() // web and db were looked up: both kept
	c.Next() // nothing looked up since: both dropped
	if fresh, _ := c.Compile("identity('^web')"); fresh == web {
		t.Errorf("a matcher unused for a whole generation was kept")
	}
	if fresh, _ := c.Compile("identity('^db')"); fresh == db {
		t.Errorf("a matcher unused for a whole generation was kept")
	}

	for range 2 {
		_, err := c.Compile("identity(")
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "match" || !errors.Is(err, ErrInvalid) {
			t.Errorf("Compile(bad) = %v, want a match FieldError wrapping ErrInvalid", err)
		}
	}
	if len(c.cur) != 2 {
		t.Errorf("cache holds %d matchers, want web and db only (no failures)", len(c.cur))
	}

	ok, err := (*MatcherCache)(nil).compile("identity('^web')")
	if err != nil || ok == nil {
		t.Errorf("nil cache compile = %v, %v; want a fresh matcher", ok, err)
	}
}

// TestMachineCheckReturnsMatcher checks that Check returns the matcher it
// validated and, for an invalid entry, the same error as Validate.
func TestMachineCheckReturnsMatcher(t *testing.T) {
	m := goodMachine()
	m.Match = "identity('^web')"
	got, err := m.Check(ValidateOptions{}, nil)
	if err != nil || got == nil || got.String() != m.Match {
		t.Fatalf("Check() = %v, %v; want the compiled matcher of %q", got, err, m.Match)
	}
	m.Match = "identity("
	got, err = m.Check(ValidateOptions{}, nil)
	if got != nil || err == nil || err.Error() != m.Validate(ValidateOptions{}).Error() {
		t.Errorf("Check(bad) = %v, %v; want nil and Validate's error %v", got, err, m.Validate(ValidateOptions{}))
	}
}
