package spec

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	sumArchive = "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf"
	sumSums    = "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339"
)

// goodMachine returns a valid v2 entry.
func goodMachine() Machine {
	return Machine{
		Name:           "web",
		Source:         "https://example.net/web-1.0.0.tgz",
		Checksum:       sumArchive,
		VerifyChecksum: sumSums,
	}
}

// goodSpec returns a valid v2 spec.
func goodSpec() *Spec {
	issued := time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)
	return &Spec{Serial: 1, IssuedAt: issued, Expires: issued.Add(24 * time.Hour), Machines: []Machine{goodMachine()}}
}

type machineCase struct {
	name   string
	edit   func(m *Machine)
	opts   ValidateOptions
	errors []string // every line of the joined error; nil means valid
}

// machineCases is the table for Machine.Validate; FuzzValidate is seeded from it.
func machineCases() []machineCase {
	long := strings.Repeat("a", 300)
	return []machineCase{
		{name: "valid", edit: func(*Machine) {}},
		{name: "valid with every v2 field", edit: func(m *Machine) {
			m.Verify, m.Match, m.Governor, m.Size, m.Auth = "SHA256SUMS", "identity('^web')", "FLEET_1", 1024, "archive-reader"
		}},
		{name: "valid nats source", edit: func(m *Machine) { m.Source = "nats://ARCHIVES/web/web-1.0.0.tgz" }},
		{name: "valid legacy with credentials", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) {
			m.Username, m.Password = "bob", "secret"
		}},
		{name: "valid http when allowed", opts: ValidateOptions{AllowHTTP: true}, edit: func(m *Machine) { m.Source = "http://example.net/web.tgz" }},
		{name: "valid 63 character name", edit: func(m *Machine) { m.Name = strings.Repeat("a", 63) }},
		{name: "valid name with digits, _ and -", edit: func(m *Machine) { m.Name = "0web_front-1" }},
		{name: "every required field missing", edit: func(m *Machine) { *m = Machine{} }, errors: []string{
			`machine: name: required`,
			`machine: source: required`,
			`machine: checksum: required`,
			`machine: verify_checksum: required`,
		}},
		{name: "Choria name with uppercase and dots", edit: func(m *Machine) { m.Name = "Web.Front_end-2" }},
		{name: "200 character name", edit: func(m *Machine) { m.Name = strings.Repeat("a", 200) }},
		{name: "name ending in a dot", edit: func(m *Machine) { m.Name = "web." }, errors: []string{
			`machine "web.": name: invalid name "web.": a name may not end with "." (Windows drops it)`,
		}},
		{name: "name with ..", edit: func(m *Machine) { m.Name = "web..x" }, errors: []string{
			`machine "web..x": name: invalid name "web..x": ".." is not allowed in a name`,
		}},
		{name: "Windows device name", edit: func(m *Machine) { m.Name = "Nul.txt" }, errors: []string{
			`machine "Nul.txt": name: invalid name "Nul.txt": "nul" is a device name on Windows`,
		}},
		{name: "non-ASCII name", edit: func(m *Machine) { m.Name = "wеb" }, errors: []string{
			`machine "wеb": name: invalid name "wеb": want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "name with path traversal", edit: func(m *Machine) { m.Name = "../../etc" }, errors: []string{
			`machine "../../etc": name: invalid name "../../etc": want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "name starting with -", edit: func(m *Machine) { m.Name = "-web" }, errors: []string{
			`machine "-web": name: invalid name "-web": want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "dot name", edit: func(m *Machine) { m.Name = ".web" }, errors: []string{
			`machine ".web": name: invalid name ".web": want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "201 character name", edit: func(m *Machine) { m.Name = strings.Repeat("a", 201) }, errors: []string{
			`machine "` + strings.Repeat("a", 64) + `"...: name: invalid name "` + strings.Repeat("a", 64) + `"...: want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "long name is cut in messages", edit: func(m *Machine) { m.Name = long }, errors: []string{
			`machine "` + long[:64] + `"...: name: invalid name "` + long[:64] + `"...: want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "reserved tmp", edit: func(m *Machine) { m.Name = "tmp" }, errors: []string{
			`machine "tmp": name: "tmp" is reserved: the machine loader skips it`,
		}},
		{name: "reserved mm_ prefix", edit: func(m *Machine) { m.Name = "mm_web" }, errors: []string{
			`machine "mm_web": name: "mm_web" is reserved: the mm_ prefix belongs to generated manager machines`,
		}},
		{name: "reserved -temp suffix", edit: func(m *Machine) { m.Name = "web-temp" }, errors: []string{
			`machine "web-temp": name: "web-temp" is reserved: the machine loader skips names ending in -temp`,
		}},
		{name: "short checksum", edit: func(m *Machine) { m.Checksum = "abc" }, errors: []string{
			`machine "web": checksum: want 64 lowercase hex characters, got "abc"`,
		}},
		{name: "uppercase checksum", edit: func(m *Machine) { m.Checksum = strings.ToUpper(sumArchive) }, errors: []string{
			`machine "web": checksum: want 64 lowercase hex characters, got "` + strings.ToUpper(sumArchive) + `"`,
		}},
		{name: "non-hex verify_checksum", edit: func(m *Machine) { m.VerifyChecksum = strings.Repeat("g", 64) }, errors: []string{
			`machine "web": verify_checksum: want 64 lowercase hex characters, got "` + strings.Repeat("g", 64) + `"`,
		}},
		{name: "verify other than SHA256SUMS", edit: func(m *Machine) { m.Verify = "MD5SUMS" }, errors: []string{
			`machine "web": verify: want "SHA256SUMS" or nothing, got "MD5SUMS"`,
		}},
		{name: "http not allowed", edit: func(m *Machine) { m.Source = "http://example.net/web.tgz" }, errors: []string{
			`machine "web": source: plain http:// is not allowed; use https:// or nats://, or allow http with --allow-http (the checksums still pin the bytes)`,
		}},
		{name: "credentials in URL are not repeated", edit: func(m *Machine) { m.Source = "https://bob:secret@example.net/web.tgz" }, errors: []string{
			`machine "web": source: credentials in the URL are not allowed; name a node-local credential in auth instead`,
		}},
		{name: "user only in URL", opts: ValidateOptions{AllowHTTP: true}, edit: func(m *Machine) { m.Source = "http://bob@example.net/web.tgz" }, errors: []string{
			`machine "web": source: credentials in the URL are not allowed; name a node-local credential in auth instead`,
		}},
		{name: "credentials in nats URL", edit: func(m *Machine) { m.Source = "nats://bob:secret@ARCHIVES/web.tgz" }, errors: []string{
			`machine "web": source: credentials in the URL are not allowed; name a node-local credential in auth instead`,
		}},
		{name: "unparsable URL does not repeat it", edit: func(m *Machine) { m.Source = "https://bob:secret@exa mple.net/web.tgz" }, errors: []string{
			`machine "web": source: not a valid URL: invalid character " " in host name`,
		}},
		{name: "unsupported scheme", edit: func(m *Machine) { m.Source = "ftp://example.net/web.tgz" }, errors: []string{
			`machine "web": source: unsupported scheme "ftp": want https://HOST/PATH or nats://BUCKET/OBJECT`,
		}},
		{name: "unsupported scheme with http allowed", opts: ValidateOptions{AllowHTTP: true}, edit: func(m *Machine) { m.Source = "file:///tmp/web.tgz" }, errors: []string{
			`machine "web": source: unsupported scheme "file": want https://HOST/PATH, http://HOST/PATH or nats://BUCKET/OBJECT`,
		}},
		{name: "relative source", edit: func(m *Machine) { m.Source = "web.tgz" }, errors: []string{
			`machine "web": source: not an absolute URL "web.tgz": want https://HOST/PATH or nats://BUCKET/OBJECT`,
		}},
		{name: "https without host", edit: func(m *Machine) { m.Source = "https:///web.tgz" }, errors: []string{
			`machine "web": source: URL "https:///web.tgz" has no host: want https://HOST/PATH or nats://BUCKET/OBJECT`,
		}},
		{name: "nats bucket with a dot", edit: func(m *Machine) { m.Source = "nats://my.bucket/web.tgz" }, errors: []string{
			`machine "web": source: invalid object store bucket "my.bucket": want letters, digits, _ or -`,
		}},
		{name: "nats with port", edit: func(m *Machine) { m.Source = "nats://ARCHIVES:4222/web.tgz" }, errors: []string{
			`machine "web": source: invalid object store bucket "ARCHIVES:4222": want letters, digits, _ or -`,
		}},
		{name: "nats without object", edit: func(m *Machine) { m.Source = "nats://ARCHIVES/" }, errors: []string{
			`machine "web": source: no object name in "nats://ARCHIVES/": want nats://BUCKET/OBJECT`,
		}},
		{name: "nats with query", edit: func(m *Machine) { m.Source = "nats://ARCHIVES/web.tgz?x=1" }, errors: []string{
			`machine "web": source: a nats:// URL must not have a query or fragment`,
		}},
		{name: "nats opaque", edit: func(m *Machine) { m.Source = "nats:ARCHIVES/web.tgz" }, errors: []string{
			`machine "web": source: want nats://BUCKET/OBJECT, got "nats:ARCHIVES/web.tgz"`,
		}},
		{name: "matcher does not compile", edit: func(m *Machine) { m.Match = "identity('^web') && hsa_command('x')" }, errors: []string{
			`machine "web": match: column 21: unknown name hsa_command; did you mean "has_command"?`,
		}},
		{name: "matcher with bad literal regexp", edit: func(m *Machine) { m.Match = "identity('web(')" }, errors: []string{
			`machine "web": match: column 10: identity: invalid regular expression "web(": missing closing )`,
		}},
		{name: "matcher too long", edit: func(m *Machine) { m.Match = strings.Repeat(" ", 4000) + "true &&" + strings.Repeat(" ", 100) }, errors: []string{
			`machine "web": match: expression is 4107 bytes long; the limit is 4096`,
		}},
		{name: "invalid governor", edit: func(m *Machine) { m.Governor = "fleet.downloads" }, errors: []string{
			`machine "web": governor: invalid governor name "fleet.downloads": want 1 to 63 letters, digits, _ or -, starting with a letter or digit`,
		}},
		{name: "negative size", edit: func(m *Machine) { m.Size = -1 }, errors: []string{
			`machine "web": size: must not be negative, got -1`,
		}},
		{name: "invalid auth", edit: func(m *Machine) { m.Auth = "Archive Reader" }, errors: []string{
			`machine "web": auth: invalid credential name "Archive Reader": want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
		}},
		{name: "v1 credentials in v2 are not repeated", edit: func(m *Machine) { m.Username, m.Password = "bob", "secret" }, errors: []string{
			`machine "web": username: only allowed in v1 (legacy) specs; name a node-local credential in auth instead`,
			`machine "web": password: only allowed in v1 (legacy) specs; name a node-local credential in auth instead`,
		}},
		{name: "legacy password without username", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) { m.Password = "secret" }, errors: []string{
			`machine "web": password: set without username`,
		}},
		{name: "legacy username with colon", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) { m.Username, m.Password = "bob:x", "secret" }, errors: []string{
			`machine "web": username: must not contain ":" (basic auth separates user and password with it)`,
		}},
		{name: "legacy rejects v2 fields", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) { m.Auth, m.Size = "reader", 10 }, errors: []string{
			`machine "web": size: not supported in v1 (legacy) specs`,
			`machine "web": auth: not supported in v1 (legacy) specs`,
		}},
		// Choria's machines watcher compiles a matcher with identity,
		// has_file, has_directory and has_command only (its matcher.go at
		// v0.30.2): what else an mms matcher knows must not go out in v1.
		{name: "legacy matcher with get_fact", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) {
			m.Match = `identity('^web') && get_fact('os.family') == 'debian'`
		}, errors: []string{
			`machine "web": match: uses get_fact(), which Choria's machines watcher cannot compile: it knows only identity(), has_file(), has_directory() and has_command(), and skips the entry without a word; drop it from the v1 spec, or sign a v2 spec (mms agents evaluate it)`,
		}},
		{name: "legacy matcher with facts", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) {
			m.Match = `facts.os.family == 'debian' || get_fact('role') == 'web'`
		}, errors: []string{
			`machine "web": match: uses get_fact() and facts, which Choria's machines watcher cannot compile: it knows only identity(), has_file(), has_directory() and has_command(), and skips the entry without a word; drop them from the v1 spec, or sign a v2 spec (mms agents evaluate them)`,
		}},
		{name: "legacy matcher Choria compiles", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) {
			m.Match = `identity('^web') && (has_file('/etc/debian_version') || has_command('apt')) && !has_directory('/opt/x')`
		}},
		{name: "every problem at once", edit: func(m *Machine) {
			*m = Machine{Name: "Web!", Source: "ftp://x/y", Checksum: "x", VerifyChecksum: "y", Verify: "z", Match: "nope", Governor: "a b", Size: -2, Auth: "A", Username: "u", Password: "p"}
		}, errors: []string{
			`machine "Web!": name: invalid name "Web!": want 1 to 200 letters, digits, _, - or ., starting with a letter or digit`,
			`machine "Web!": source: unsupported scheme "ftp": want https://HOST/PATH or nats://BUCKET/OBJECT`,
			`machine "Web!": checksum: want 64 lowercase hex characters, got "x"`,
			`machine "Web!": verify_checksum: want 64 lowercase hex characters, got "y"`,
			`machine "Web!": verify: want "SHA256SUMS" or nothing, got "z"`,
			`machine "Web!": match: column 1: unknown name nope`,
			`machine "Web!": governor: invalid governor name "a b": want 1 to 63 letters, digits, _ or -, starting with a letter or digit`,
			`machine "Web!": size: must not be negative, got -2`,
			`machine "Web!": username: only allowed in v1 (legacy) specs; name a node-local credential in auth instead`,
			`machine "Web!": password: only allowed in v1 (legacy) specs; name a node-local credential in auth instead`,
		}},
	}
}

func TestMachineValidate(t *testing.T) {
	for _, tt := range machineCases() {
		t.Run(tt.name, func(t *testing.T) {
			m := goodMachine()
			tt.edit(&m)
			checkErrors(t, "Validate()", m.Validate(tt.opts), tt.errors)
		})
	}
}

func TestValidateMachines(t *testing.T) {
	other := goodMachine()
	other.Name = "db"
	bad := goodMachine()
	bad.Name, bad.Checksum = "", "abc"
	upper := goodMachine()
	upper.Name = "Web"
	tests := []struct {
		name   string
		ms     []Machine
		errors []string
	}{
		{name: "empty list", ms: nil},
		{name: "two machines", ms: []Machine{goodMachine(), other}},
		{name: "duplicate names", ms: []Machine{goodMachine(), other, goodMachine(), goodMachine()}, errors: []string{
			`machine[2] "web": name: duplicate of machine[0]`,
			`machine[3] "web": name: duplicate of machine[0]`,
		}},
		{name: "names differing only in case", ms: []Machine{goodMachine(), upper}, errors: []string{
			`machine[1] "Web": name: duplicate of machine[0] "web" (names may not differ only in case)`,
		}},
		{name: "entries without names are not duplicates", ms: []Machine{bad, bad}, errors: []string{
			`machine[0]: name: required`,
			`machine[0]: checksum: want 64 lowercase hex characters, got "abc"`,
			`machine[1]: name: required`,
			`machine[1]: checksum: want 64 lowercase hex characters, got "abc"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErrors(t, "ValidateMachines()", ValidateMachines(tt.ms, ValidateOptions{}), tt.errors)
		})
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(s *Spec)
		opts   ValidateOptions
		errors []string
	}{
		{name: "valid", edit: func(*Spec) {}},
		{name: "valid without expiry", edit: func(s *Spec) { s.Expires = time.Time{} }},
		{name: "valid empty", edit: func(s *Spec) { s.Machines = nil }},
		{name: "legacy needs no serial or time", opts: ValidateOptions{Legacy: true}, edit: func(s *Spec) { *s = Spec{Machines: s.Machines} }},
		{name: "serial zero and no issue time", edit: func(s *Spec) { s.Serial, s.IssuedAt = 0, time.Time{} }, errors: []string{
			`serial: must be at least 1`,
			`issued_at: required`,
		}},
		{name: "expires before issued", edit: func(s *Spec) { s.Expires = s.IssuedAt.Add(-time.Second) }, errors: []string{
			`expires: must be after issued_at (2025-01-31T12:00:00Z), got 2025-01-31T11:59:59Z`,
		}},
		{name: "spec and machine problems together", edit: func(s *Spec) {
			s.Serial = 0
			s.Machines = append(s.Machines, Machine{Name: "db", Source: "https://example.net/db.tgz", Checksum: sumArchive, VerifyChecksum: "nope"})
		}, errors: []string{
			`serial: must be at least 1`,
			`machine[1] "db": verify_checksum: want 64 lowercase hex characters, got "nope"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := goodSpec()
			tt.edit(s)
			checkErrors(t, "Validate()", s.Validate(tt.opts), tt.errors)
		})
	}
}

func TestValidNameMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(NamePattern)
	gov := regexp.MustCompile(GovernorPattern)
	for _, name := range []string{"", "a", "A", "0", "_", "-", ".", ".a", "a.", "a_", "a-", "a.b", "ab", "web1", "Web", "é", "a\n", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 200), strings.Repeat("a", 201), "tmp", "mm_x"} {
		if got, want := matchName(name, true, true, MaxNameLength), re.MatchString(name); got != want {
			t.Errorf("matchName(%q, names) = %v, want %v (NamePattern)", name, got, want)
		}
		if got, want := matchName(name, true, false, 63), gov.MatchString(name); got != want {
			t.Errorf("matchName(%q, governors) = %v, want %v (GovernorPattern)", name, got, want)
		}
	}
}

func TestSplitObjectSource(t *testing.T) {
	tests := []struct {
		src, bucket, object, err string
	}{
		{src: "nats://ARCHIVES/web.tgz", bucket: "ARCHIVES", object: "web.tgz"},
		{src: "nats://a_b-1/web/1.0/web.tgz", bucket: "a_b-1", object: "web/1.0/web.tgz"},
		{src: "nats://ARCHIVES/web%20one.tgz", bucket: "ARCHIVES", object: "web one.tgz"},
		{src: "https://ARCHIVES/web.tgz", err: `want a nats://BUCKET/OBJECT URL, got scheme "https"`},
		{src: "nats://ARCHIVES", err: `no object name in "nats://ARCHIVES": want nats://BUCKET/OBJECT`},
		{src: "nats:///web.tgz", err: `invalid object store bucket "": want letters, digits, _ or -`},
		{src: "nats://ARCHIVES/web.tgz#x", err: `a nats:// URL must not have a query or fragment`},
		{src: "nats://%zz/x", err: `not a valid URL: invalid URL escape "%zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			bucket, object, err := SplitObjectSource(tt.src)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("SplitObjectSource(%q) err = %v, want %s", tt.src, err, tt.err)
				}
				return
			}
			if err != nil || bucket != tt.bucket || object != tt.object {
				t.Fatalf("SplitObjectSource(%q) = %q, %q, %v, want %q, %q, nil", tt.src, bucket, object, err, tt.bucket, tt.object)
			}
		})
	}
}
