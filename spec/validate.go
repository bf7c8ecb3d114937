package spec

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ValidateOptions is the policy validation applies. The zero value is the
// strict v2 policy: https and nats sources only, no v1 fields.
type ValidateOptions struct {
	// AllowHTTP accepts http:// sources. The checksums still pin the bytes,
	// but the fetch is in clear text.
	AllowHTTP bool
	// HTTPFix names how to allow http:// sources where the spec is
	// checked (a flag such as --allow-http, or a property such as
	// allow_http: true); an http:// source refused names it. Empty means
	// --allow-http.
	HTTPFix string
	// Legacy validates a v1 (Choria) spec: username and password are
	// accepted, auth, size, health, rollout and hold are not, nor are matchers
	// using get_fact() or facts (Choria does not know them), and the spec
	// needs no serial or issued_at.
	Legacy bool
}

// Validate checks the spec and every machine in it and returns every
// problem at once, joined with [errors.Join]. Each problem is a
// [*FieldError] wrapping [ErrInvalid]. Unless opts.Legacy is set, the
// serial must be at least 1 and issued_at must be set; expires, when set,
// must be after issued_at.
//
// Validate compiles each matcher to check it and throws the result away;
// an agent keeps them with [Machine.Check] or [CompileMatchers].
func (s *Spec) Validate(opts ValidateOptions) error {
	var errs []error
	if !opts.Legacy {
		if s.Serial == 0 {
			errs = append(errs, &FieldError{Field: "serial", Err: errors.New("must be at least 1")})
		}
		if s.IssuedAt.IsZero() {
			errs = append(errs, &FieldError{Field: "issued_at", Err: errRequired})
		}
	} else if s.ResetHistory {
		errs = append(errs, &FieldError{Field: "reset_history", Err: errors.New("v2 only: v1 envelopes have no serial to reset")})
	}
	if !s.Expires.IsZero() && !s.IssuedAt.IsZero() && !s.Expires.After(s.IssuedAt) {
		errs = append(errs, &FieldError{Field: "expires", Err: fmt.Errorf("must be after issued_at (%s), got %s",
			s.IssuedAt.Format(timeLayout), s.Expires.Format(timeLayout))})
	}
	errs = append(errs, listProblems(s.Machines, opts)...)
	return errors.Join(errs...)
}

// ValidateMachines checks every entry of a machine list and that no two
// entries share a name, ignoring case (two such names are one directory on
// a case-insensitive file system). Problems are named by index and name,
// e.g. `machine[2] "web": name: duplicate of machine[0]`.
func ValidateMachines(ms []Machine, opts ValidateOptions) error {
	return errors.Join(listProblems(ms, opts)...)
}

// listProblems returns the problems of every entry of ms, named.
func listProblems(ms []Machine, opts ValidateOptions) []error {
	var errs []error
	seen := make(map[string]int, len(ms))
	for i := range ms {
		m := &ms[i]
		probs := m.problems(opts)
		key := strings.ToLower(m.Name)
		if j, dup := seen[key]; dup && m.Name != "" {
			err := fmt.Errorf("duplicate of machine[%d]", j)
			if ms[j].Name != m.Name {
				err = fmt.Errorf("duplicate of machine[%d] %s (names may not differ only in case)", j, quote(ms[j].Name))
			}
			probs = append(probs, &FieldError{Field: "name", Err: err})
		} else {
			seen[key] = i
		}
		setEntry(probs, entryName(i, m.Name))
		errs = append(errs, probs...)
	}
	return errs
}

// Validate checks one entry on its own (no duplicate check) and returns
// every problem at once; the entry is named `machine "web"`. See
// [ValidateMachines] for a list.
func (m Machine) Validate(opts ValidateOptions) error {
	_, err := m.Check(opts, nil)
	return err
}

// Check validates the entry like [Machine.Validate] and, when it is valid,
// also returns its compiled matcher, so an agent compiles each matcher
// once. With a non-nil cache the matcher comes from it (see
// [MatcherCache]).
func (m Machine) Check(opts ValidateOptions, cache *MatcherCache) (*Matcher, error) {
	matcher, probs := m.check(opts, cache)
	if len(probs) > 0 {
		setEntry(probs, entryName(-1, m.Name))
		return nil, errors.Join(probs...)
	}
	return matcher, nil
}

// errV1Only and errV2Only explain fields the other format lacks.
var (
	errV1Only = errors.New("only allowed in v1 (legacy) specs; name a node-local credential in auth instead")
	errV2Only = errors.New("not supported in v1 (legacy) specs")
)

// problems returns the entry's problems as FieldErrors without Entry.
func (m *Machine) problems(opts ValidateOptions) []error {
	_, errs := m.check(opts, nil)
	return errs
}

// check returns the entry's compiled matcher (through cache, when not nil)
// and its problems as FieldErrors without Entry.
func (m *Machine) check(opts ValidateOptions, cache *MatcherCache) (*Matcher, []error) {
	var errs []error
	var matcher *Matcher
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, &FieldError{Field: field, Err: err})
		}
	}
	if m.Name == "" {
		add("name", errRequired)
	} else {
		add("name", ValidName(m.Name))
	}
	add("source", checkSource(m.Source, opts))
	add("checksum", checkSHA256(m.Checksum))
	add("verify_checksum", checkSHA256(m.VerifyChecksum))
	if m.Verify != "" && m.Verify != VerifySHA256SUMS {
		add("verify", fmt.Errorf("want %q or nothing, got %s", VerifySHA256SUMS, quote(m.Verify)))
	}
	var err error
	if matcher, err = cache.compile(m.Match); err != nil {
		add("match", err)
	} else if opts.Legacy {
		add("match", checkChoriaMatcher(m.Match))
	}
	if m.Governor != "" {
		add("governor", checkGovernor(m.Governor))
	}
	switch {
	case m.Size < 0:
		add("size", fmt.Errorf("must not be negative, got %d", m.Size))
	case m.Size > 0 && opts.Legacy:
		add("size", errV2Only)
	}
	switch {
	case m.Auth != "" && opts.Legacy:
		add("auth", errV2Only)
	case m.Auth != "":
		add("auth", CheckCredentialName(m.Auth))
	}
	switch {
	case m.Health != nil && opts.Legacy:
		add("health", errV2Only)
	case m.Health != nil:
		add("health", m.Health.check())
	}
	switch {
	case m.Rollout != nil && opts.Legacy:
		add("rollout", errV2Only)
	case m.Rollout != nil && m.Health == nil:
		add("rollout", errors.New("needs a health gate (health): a wave is done when its nodes report the version healthy"))
	case m.Rollout != nil:
		add("rollout", m.Rollout.check())
	}
	switch {
	case m.Hold != "" && opts.Legacy:
		add("hold", errV2Only)
	case m.Hold != "" && strings.TrimSpace(m.Hold) == "":
		add("hold", errors.New("an empty expression would hold every node; remove hold, or write the nodes to hold (such as \"identity('^web3$')\")"))
	case m.Hold != "":
		if _, err := cache.compile(m.Hold); err != nil {
			add("hold", err)
		}
	}
	// Never repeat username or password values in messages.
	if !opts.Legacy {
		if m.Username != "" {
			add("username", errV1Only)
		}
		if m.Password != "" {
			add("password", errV1Only)
		}
	} else {
		if strings.Contains(m.Username, ":") {
			add("username", errors.New(`must not contain ":" (basic auth separates user and password with it)`))
		}
		if m.Password != "" && m.Username == "" {
			add("password", errors.New("set without username"))
		}
	}
	return matcher, errs
}

// checkSource checks an archive source URL against opts.
func checkSource(src string, opts ValidateOptions) error {
	if src == "" {
		return errRequired
	}
	u, err := url.Parse(src)
	if err != nil {
		// url.Error repeats the URL, which may hold credentials: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a valid URL: %w", err)
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not allowed; name a node-local credential in auth instead")
	}
	want := "https://HOST/PATH or nats://BUCKET/OBJECT"
	if opts.AllowHTTP {
		want = "https://HOST/PATH, http://HOST/PATH or nats://BUCKET/OBJECT"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !opts.AllowHTTP {
			fix := opts.HTTPFix
			if fix == "" {
				fix = "--allow-http"
			}
			return fmt.Errorf("plain http:// is not allowed; use https:// or nats://, or allow http with %s (the checksums still pin the bytes)", fix)
		}
	case "nats":
		_, _, err := SplitObjectSource(src)
		return err
	case "":
		return fmt.Errorf("not an absolute URL %s: want %s", quote(src), want)
	default:
		return fmt.Errorf("unsupported scheme %s: want %s", quote(u.Scheme), want)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %s has no host: want %s", quote(src), want)
	}
	return nil
}

// SplitObjectSource splits a nats://BUCKET/OBJECT source into the JetStream
// object store bucket and the object name (the URL path without its leading
// slash, unescaped, so it may contain further slashes). Validation uses it;
// a fetcher should too, so both agree on what a source means.
func SplitObjectSource(src string) (bucket, object string, err error) {
	u, err := url.Parse(src)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("not a valid URL: %w", err)
	}
	switch {
	case u.Scheme != "nats":
		return "", "", fmt.Errorf("want a nats://BUCKET/OBJECT URL, got scheme %s", quote(u.Scheme))
	case u.User != nil:
		return "", "", errors.New("credentials in the URL are not allowed; name a node-local credential in auth instead")
	case u.Opaque != "":
		return "", "", fmt.Errorf("want nats://BUCKET/OBJECT, got %s", quote(src))
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", "", errors.New("a nats:// URL must not have a query or fragment")
	}
	if err := checkBucket(u.Host); err != nil {
		return "", "", err
	}
	object = strings.TrimPrefix(u.Path, "/")
	if object == "" {
		return "", "", fmt.Errorf("no object name in %s: want nats://BUCKET/OBJECT", quote(src))
	}
	return u.Host, object, nil
}

// timeLayout is how errors print times.
const timeLayout = "2006-01-02T15:04:05Z07:00"
