package spec

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseMachines checks that ParseMachines never panics, that its errors
// are ErrInvalid, and that what it accepts survives a JSON round trip.
func FuzzParseMachines(f *testing.F) {
	for _, tt := range parseMachinesCases() {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseMachines(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseMachines() err = %v, want an ErrInvalid", err)
			}
			return
		}
		if ms == nil {
			t.Fatal("ParseMachines() = nil, nil")
		}
		_ = ValidateMachines(ms, ValidateOptions{Legacy: true, AllowHTTP: true})
		out, err := json.Marshal(ms)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) err = %v", ms, err)
		}
		again, err := ParseMachines(out)
		if err != nil {
			t.Fatalf("ParseMachines(%s) err = %v after a round trip", out, err)
		}
		if diff := cmp.Diff(ms, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +again):\n%s", diff)
		}
	})
}

// FuzzDecodeV2 checks that DecodeV2 never panics, that its errors are
// ErrInvalid, and that what it accepts survives a round trip.
func FuzzDecodeV2(f *testing.F) {
	for _, tt := range decodeV2Cases() {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(`{"serial":1,"issued_at":"2026-12-01T00:00:00Z","machines":[` + v2Entry +
		`,"health":{"states":["RUNNING"],"within":"1m","fail_states":["FAILED"]},"rollout":{"waves":["1","10%","100%"],"pause":"30s","stale":"skip"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeV2(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeV2() err = %v, want an ErrInvalid", err)
			}
			return
		}
		_ = s.Validate(ValidateOptions{})
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) err = %v", s, err)
		}
		again, err := DecodeV2(out)
		if err != nil {
			t.Fatalf("DecodeV2(%s) err = %v after a round trip", out, err)
		}
		if diff := cmp.Diff(s, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +again):\n%s", diff)
		}
	})
}

// FuzzDecodeV1 checks that DecodeV1 never panics and that its errors are
// ErrInvalid.
func FuzzDecodeV1(f *testing.F) {
	for _, tt := range decodeV1Cases() {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := DecodeV1(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeV1() err = %v, want an ErrInvalid", err)
			}
			return
		}
		_ = ValidateMachines(ms, ValidateOptions{Legacy: true})
	})
}

// FuzzValidate checks that validation never panics, that its errors are
// ErrInvalid, and that an entry it accepts really has a good name, hashes
// and matcher.
func FuzzValidate(f *testing.F) {
	for _, tt := range machineCases() {
		m := goodMachine()
		tt.edit(&m)
		f.Add(m.Name, m.Source, m.Checksum, m.VerifyChecksum, m.Verify, m.Match, m.Governor, m.Size, m.Auth, m.Username, m.Password, tt.opts.Legacy, tt.opts.AllowHTTP)
	}
	name := regexp.MustCompile(NamePattern)
	hash := regexp.MustCompile(`^[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, n, src, sum, vsum, verify, match, gov string, size int64, auth, user, pass string, legacy, http bool) {
		m := Machine{Name: n, Source: src, Checksum: sum, VerifyChecksum: vsum, Verify: verify, Match: match, Governor: gov, Size: size, Auth: auth, Username: user, Password: pass}
		opts := ValidateOptions{Legacy: legacy, AllowHTTP: http}
		err := m.Validate(opts)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() err = %v, want an ErrInvalid", err)
			}
			return
		}
		if !name.MatchString(m.Name) || !hash.MatchString(m.Checksum) || !hash.MatchString(m.VerifyChecksum) || m.Size < 0 {
			t.Fatalf("Validate(%+v) = nil for a bad name, hash or size", m)
		}
		if _, err := CompileMatcher(m.Match); err != nil {
			t.Fatalf("Validate(%+v) = nil but CompileMatcher() err = %v", m, err)
		}
		if !legacy && (m.Username != "" || m.Password != "") {
			t.Fatalf("Validate(%+v) = nil for v1 credentials in a v2 entry", m)
		}
		s := &Spec{Machines: []Machine{m, m}}
		if err := s.Validate(ValidateOptions{Legacy: true, AllowHTTP: http}); err == nil {
			t.Fatalf("Spec.Validate() = nil for a duplicate name %q", m.Name)
		}
	})
}

// FuzzCompileMatcher checks that compiling and running any expression never
// panics, that compile errors are ErrInvalid, and that the length bound holds.
func FuzzCompileMatcher(f *testing.F) {
	for _, tt := range compileCases() {
		f.Add(tt.src)
	}
	for _, src := range []string{"identity('^web') && has_command('facter')", "facts.os.family == 'debian'", "get_fact('disks.0.size') > 1",
		"identity(facts.role)", "has_file('/etc/motd') || has_directory('/secret/forbidden')", "(facts.x ?? 1) > 0", "facts?.a?.b == nil",
		`none(1..99, identity("^x" + string(#)))`, `any(["a"], "web" matches (# + "b"))`, `all(facts.list ?? [], # matches "x")`} {
		f.Add(src)
	}
	env := testEnv()
	f.Fuzz(func(t *testing.T, src string) {
		m, err := CompileMatcher(src)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CompileMatcher(%q) err = %v, want an ErrInvalid", src, err)
			}
			return
		}
		if len(src) > MaxMatcherLength {
			t.Fatalf("CompileMatcher() accepted %d bytes, over the %d limit", len(src), MaxMatcherLength)
		}
		_, _ = m.Match(env)
		_, _ = m.Match(nil)
	})
}

// FuzzParseFacts checks that ParseFacts never panics and returns only
// JSON-encodable values.
func FuzzParseFacts(f *testing.F) {
	for _, tt := range parseFactsCases() {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		facts, err := ParseFacts(data)
		if err != nil {
			return
		}
		if facts == nil {
			t.Fatal("ParseFacts() = nil, nil")
		}
		if _, err := json.Marshal(facts); err != nil {
			var unsupported *json.UnsupportedValueError
			if !errors.As(err, &unsupported) { // YAML .nan and .inf are valid facts but not JSON
				t.Fatalf("json.Marshal(ParseFacts()) err = %v", err)
			}
		}
	})
}

// FuzzDecodeV2Fast checks that the fast decoder agrees with the full one:
// whatever it accepts, the full decoder accepts too and decodes to the same
// spec. (What it refuses goes to the full decoder, so DecodeV2 as a whole
// is the full decoder's, only faster.)
func FuzzDecodeV2Fast(f *testing.F) {
	for _, tt := range decodeV2Cases() {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(`{"serial":1,"issued_at":"2026-12-01T00:00:00Z","machines":[` + v2Entry +
		`,"health":{"states":["RUNNING"],"within":"1m","fail_states":["FAILED"]},"rollout":{"waves":["1","10%","100%"],"pause":"30s","stale":"skip"}}]}`))
	f.Add([]byte(`{"serial":1,"issued_at":null,"expires":"2026-12-01T00:00:00.5+01:00","reset_history":false,"machines":[{"name":"a\u0062","size":-0,"auth":null,"health":null}]}`))
	f.Add([]byte(` {"machines":[],"serial":18446744073709551615} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, err := decodeV2Fast(data)
		if err != nil {
			return
		}
		full, err := decodeV2Full(data)
		if err != nil {
			t.Fatalf("the fast decoder accepted %q, the full one refused it: %v", data, err)
		}
		if diff := cmp.Diff(full, fast); diff != "" {
			t.Fatalf("decoding %q: the fast decoder differs from the full one (-full +fast):\n%s", data, diff)
		}
	})
}

// FuzzIdentityMatcher checks that a matcher compiled without expr (only
// identity('…') with a literal pattern) answers as expr would, and that
// expr compiles every matcher the short way takes.
func FuzzIdentityMatcher(f *testing.F) {
	for _, s := range []struct{ src, id string }{
		{`identity('^web')`, "web1"}, {` identity ( "^edge-00001[.]" ) `, "edge-00001.x"}, {`identity('')`, ""},
		{`identity('a|b')`, "b"}, {`identity('[')`, "x"}, {`identity('(?i)WEB')`, "web"}, {`identity('x') || true`, "y"},
	} {
		f.Add(s.src, s.id)
	}
	f.Fuzz(func(t *testing.T, src, id string) {
		m, err := compileMatcher(src)
		if err != nil || m.ident == nil {
			return
		}
		slow, err := compileExpr(&Matcher{src: src}, src)
		if err != nil {
			t.Fatalf("%q compiled without expr; expr refuses it: %v", src, err)
		}
		env := &Env{Identity: id}
		got, gerr := m.Match(env)
		want, werr := slow.Match(env)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Fatalf("%q on %q: without expr %v, %v; expr %v, %v", src, id, got, gerr, want, werr)
		}
	})
}
