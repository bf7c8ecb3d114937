package spec

// MatcherCache compiles each match expression once across the specs an
// agent plans: a new serial usually changes one entry's version and keeps
// every matcher, and compiling is most of the cost of planning a large
// spec. It keeps two generations: the matchers looked up since the last
// [MatcherCache.Next] and those of the generation before, so its size is
// bounded by the matchers of the last two specs. Only matchers that
// compile are kept; a sharing of one *Matcher between entries and specs is
// safe (see [Matcher]).
//
// The zero value is ready to use. A MatcherCache is not safe for
// concurrent use.
type MatcherCache struct {
	cur, prev map[string]*Matcher
}

// Compile returns the matcher of src, compiled now or earlier. Errors are
// those of [CompileMatcher].
func (c *MatcherCache) Compile(src string) (*Matcher, error) {
	m, err := c.compile(src)
	if err != nil {
		return nil, &FieldError{Field: "match", Err: err}
	}
	return m, nil
}

// Next starts a new generation: matchers not looked up since the previous
// call are dropped at the next one.
func (c *MatcherCache) Next() {
	c.prev, c.cur = c.cur, nil
}

// compile is Compile with errors that carry no field name; a nil cache
// compiles every time.
func (c *MatcherCache) compile(src string) (*Matcher, error) {
	if c == nil {
		return compileMatcher(src)
	}
	if m, ok := c.cur[src]; ok {
		return m, nil
	}
	m, ok := c.prev[src]
	if !ok {
		var err error
		if m, err = compileMatcher(src); err != nil {
			return nil, err
		}
	}
	if c.cur == nil {
		c.cur = make(map[string]*Matcher)
	}
	c.cur[src] = m
	return m, nil
}
