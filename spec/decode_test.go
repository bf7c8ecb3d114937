package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// choriaMachines is the machines.json of Choria's machines watcher README.
const choriaMachines = `[
 {
   "name": "facts",
     "source": "https://my.example.net/metadata/metadata-machine-1.0.0.tgz",
     "verify": "SHA256SUMS",
     "verify_checksum": "1e85719c6959eb0f2c8f2166e30ae952ccaef2c286f31868ea1d311d3738a339",
     "checksum": "f11ea2005de97bf309bafac46e77c01925307a26675f44f388d4502d2b9d00bf",
     "match": "has_command('facter')"
 }
]
`

// choriaMachine is choriaMachines decoded.
func choriaMachine() Machine {
	return Machine{
		Name:           "facts",
		Source:         "https://my.example.net/metadata/metadata-machine-1.0.0.tgz",
		Verify:         "SHA256SUMS",
		VerifyChecksum: sumSums,
		Checksum:       sumArchive,
		Match:          "has_command('facter')",
	}
}

const v2Entry = `{"name":"web","source":"https://example.net/web.tgz","checksum":"` + sumArchive + `","verify_checksum":"` + sumSums + `"`

type decodeCase struct {
	name   string
	in     string
	want   any // *Spec or []Machine when valid
	errors []string
}

// decodeV2Cases is the table for DecodeV2; FuzzDecodeV2 is seeded from it.
func decodeV2Cases() []decodeCase {
	issued := time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)
	web := Machine{Name: "web", Source: "https://example.net/web.tgz", Checksum: sumArchive, VerifyChecksum: sumSums}
	sized := web
	sized.Size, sized.Auth, sized.Governor, sized.Match, sized.Verify = 10, "reader", "G", "true", "SHA256SUMS"
	return []decodeCase{
		{name: "valid", in: `{"serial":7,"issued_at":"2025-01-31T12:00:00Z","expires":"2025-02-01T12:00:00Z","machines":[` + v2Entry + `}]}`,
			want: &Spec{Serial: 7, IssuedAt: issued, Expires: issued.Add(24 * time.Hour), Machines: []Machine{web}}},
		{name: "valid with every v2 field", in: `{"serial":1,"issued_at":"2025-01-31T12:00:00Z","machines":[` + v2Entry + `,"size":10,"auth":"reader","governor":"G","match":"true","verify":"SHA256SUMS"}]}`,
			want: &Spec{Serial: 1, IssuedAt: issued, Machines: []Machine{sized}}},
		{name: "steering fields", in: `{"serial":1,"issued_at":"2025-01-31T12:00:00Z","machines":[` + v2Entry + `,"hold":"identity('^web3$')",` +
			`"health":{"states":["ready"],"within":"1m0s"},"rollout":{"waves":["100%"],"max_failed":"10%","min_done":5,"paused":true}},` +
			v2Entry + `,"health":{"states":["ready"],"within":"1m0s"},"rollout":{"waves":["100%"],"max_failed":2}}]}`,
			want: &Spec{Serial: 1, IssuedAt: issued, Machines: []Machine{steered(web, Budget{N: 10, Share: true}, 5, true, "identity('^web3$')"), steered(web, Budget{N: 2}, 0, false, "")}}},
		{name: "max_failed of a wrong kind", in: `{"serial":1,"machines":[` + v2Entry + `,"rollout":{"waves":["100%"],"max_failed":"2"}},` +
			v2Entry + `,"rollout":{"waves":["100%"],"max_failed":-1}},` + v2Entry + `,"rollout":{"waves":["100%"],"max_failed":"101%"}},` +
			v2Entry + `,"rollout":{"waves":["100%"],"max_failed":1.5}},` + v2Entry + `,"hold":true}]}`, errors: []string{
			`machine[0] "web": rollout: want a node count such as 1 or a share such as "10%", got "2"`,
			`machine[1] "web": rollout: want a node count such as 1 or a share such as "10%", got -1`,
			`machine[2] "web": rollout: want a node count such as 1 or a share such as "10%", got "101%"`,
			`machine[3] "web": rollout: want a node count such as 1 or a share such as "10%", got 1.5`,
			`machine[4] "web": hold: want a string, got true`,
		}},
		{name: "valid empty with white space", in: " \n{ \"machines\" : [ ] , \"serial\" : 2 }\n",
			want: &Spec{Serial: 2, Machines: []Machine{}}},
		{name: "valid nulls", in: `{"serial":3,"expires":null,"machines":[{"name":null}]}`,
			want: &Spec{Serial: 3, Machines: []Machine{{}}}},
		{name: "reset spec", in: `{"serial":4,"issued_at":"2025-01-31T12:00:00Z","reset_history":true,"machines":[]}`,
			want: &Spec{Serial: 4, IssuedAt: issued, ResetHistory: true, Machines: []Machine{}}},
		{name: "reset_history not a boolean", in: `{"serial":4,"reset_history":"yes","machines":[]}`, errors: []string{`reset_history: want true or false, got "yes"`}},
		{name: "reset_history null", in: `{"serial":4,"reset_history":null,"machines":[]}`, errors: []string{`reset_history: want true or false, got null`}},
		{name: "empty", in: "", errors: []string{`empty input`}},
		{name: "not JSON", in: "serial: 1", errors: []string{`invalid JSON at line 1, column 1: invalid character 's' looking for beginning of value`}},
		{name: "truncated", in: `{"serial":1,"machines":[`, errors: []string{`invalid JSON: unexpected end of input`}},
		{name: "trailing data", in: "{\"machines\":[]}\n{}", errors: []string{`invalid JSON at line 2, column 1: unexpected data after the end of the value`}},
		{name: "a list", in: `[]`, errors: []string{`want a JSON object, got a list`}},
		{name: "unknown top-level field", in: `{"serial":1,"machines":[],"target":"prod"}`, errors: []string{`unknown field "target"`}},
		{name: "repeated field", in: `{"serial":1,"serial":2,"machines":[]}`, errors: []string{`repeated field "serial"`}},
		{name: "machines missing", in: `{"serial":1}`, errors: []string{`machines: required`}},
		{name: "machines not a list", in: `{"machines":{"name":"web"}}`, errors: []string{`machines: want a list of machines, got an object`}},
		{name: "machines null", in: `{"machines":null}`, errors: []string{`machines: want a list of machines, got null`}},
		{name: "bad serials and times", in: `{"serial":-1,"issued_at":"yesterday","expires":1700000000,"machines":[]}`, errors: []string{
			`serial: want a whole number from 1 to 18446744073709551615, got -1`,
			`issued_at: want an RFC 3339 time such as 2025-01-31T12:00:00Z, got "yesterday"`,
			`expires: want an RFC 3339 time such as 2025-01-31T12:00:00Z, got 1700000000`,
		}},
		{name: "serial too big", in: `{"serial":18446744073709551616,"machines":[]}`, errors: []string{`serial: want a whole number from 1 to 18446744073709551615, got 18446744073709551616`}},
		{name: "serial as string", in: `{"serial":"1","machines":[]}`, errors: []string{`serial: want a whole number from 1 to 18446744073709551615, got "1"`}},
		{name: "serial null", in: `{"serial":null,"machines":[]}`, errors: []string{`serial: want a whole number from 1 to 18446744073709551615, got null`}},
		{name: "v1 credentials are unknown in v2", in: `{"serial":1,"machines":[` + v2Entry + `,"username":"bob","password":"secret"}]}`, errors: []string{
			`machine[0] "web": unknown field "username"`,
			`machine[0] "web": unknown field "password"`,
		}},
		{name: "entry problems are all reported", in: `{"serial":1,"machines":[` + v2Entry + `,"chekcsum":"x"},"web",{"name":"db","size":"12","match":true,"size":1}]}`, errors: []string{
			`machine[0] "web": unknown field "chekcsum"; did you mean "checksum"?`,
			`machine[1]: want an object, got "web"`,
			`machine[2] "db": size: want an integer, got "12"`,
			`machine[2] "db": match: want a string, got true`,
			`machine[2] "db": repeated field "size"`,
		}},
		{name: "fractional size", in: `{"machines":[{"size":1.5,"name":["x"]}]}`, errors: []string{
			`machine[0]: size: want an integer, got 1.5`,
			`machine[0]: name: want a string, got a list`,
		}},
		{name: "hostile value is cut", in: `{"machines":[{"name":"web","checksum":{"a":1},"source":"` + longString + `"}]}`, errors: []string{
			`machine[0] "web": checksum: want a string, got an object`,
		}},
		{name: "hostile number is cut", in: `{"machines":[{"name":"web","size":1` + longDigits + `}]}`, errors: []string{
			`machine[0] "web": size: want an integer, got 1` + longDigits[:63] + `...`,
		}},
	}
}

// steered is m with a health gate, a rollout with the steering fields
// and a hold.
func steered(m Machine, maxFailed Budget, minDone int, paused bool, hold string) Machine {
	m.Health = &Health{States: []string{"ready"}, Within: Duration(time.Minute)}
	m.Rollout = &Rollout{Waves: []string{"100%"}, MaxFailed: maxFailed, MinDone: minDone, Paused: paused}
	m.Hold = hold
	return m
}

var (
	longString = "https://example.net/" + strings.Repeat("x", 200)
	longDigits = strings.Repeat("9", 100)
)

func TestDecodeV2(t *testing.T) {
	for _, tt := range decodeV2Cases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeV2([]byte(tt.in))
			checkErrors(t, "DecodeV2()", err, tt.errors)
			if tt.errors != nil {
				if got != nil {
					t.Errorf("DecodeV2() = %+v with an error, want nil", got)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeV2() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// decodeV1Cases is the table for DecodeV1.
func decodeV1Cases() []decodeCase {
	legacy := choriaMachine()
	legacy.Username, legacy.Password, legacy.Governor = "bob", "secret", "G"
	return []decodeCase{
		{name: "choria README", in: choriaMachines, want: []Machine{choriaMachine()}},
		{name: "every v1 field", in: `[{"name":"facts","source":"https://my.example.net/metadata/metadata-machine-1.0.0.tgz","verify":"SHA256SUMS",` +
			`"verify_checksum":"` + sumSums + `","checksum":"` + sumArchive + `","match":"has_command('facter')","username":"bob","password":"secret","governor":"G"}]`,
			want: []Machine{legacy}},
		{name: "empty list", in: "[]", want: []Machine{}},
		{name: "object", in: `{"machines":[]}`, errors: []string{`want a JSON list of machines, got an object`}},
		{name: "v2 fields are unknown in v1", in: `[{"name":"web","size":1,"auth":"reader","serial":3}]`, errors: []string{
			`machine[0] "web": unknown field "size"`,
			`machine[0] "web": unknown field "auth"`,
			`machine[0] "web": unknown field "serial"`,
		}},
		{name: "wrong types", in: `[{"name":1},null]`, errors: []string{
			`machine[0]: name: want a string, got 1`,
			`machine[1]: want an object, got null`,
		}},
	}
}

func TestDecodeV1(t *testing.T) {
	for _, tt := range decodeV1Cases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeV1([]byte(tt.in))
			checkErrors(t, "DecodeV1()", err, tt.errors)
			if tt.errors != nil {
				if got != nil {
					t.Errorf("DecodeV1() = %+v with an error, want nil", got)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeV1() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeThenValidate checks that the Choria README spec, decoded as v1,
// is valid under both policies (it uses no version-specific field).
func TestDecodeThenValidate(t *testing.T) {
	ms, err := DecodeV1([]byte(choriaMachines))
	if err != nil {
		t.Fatalf("DecodeV1(README) err = %v", err)
	}
	for _, opts := range []ValidateOptions{{Legacy: true}, {}} {
		if err := ValidateMachines(ms, opts); err != nil {
			t.Errorf("ValidateMachines(README, %+v) = %v, want nil", opts, err)
		}
	}
}

// TestDecodeV2FastTakesValidPayloads: every valid payload of the table is
// decoded by the fast decoder (so a large spec never pays for the full
// one), to what the table wants; every invalid one is left to the full
// decoder, whose errors the table checks.
func TestDecodeV2FastTakesValidPayloads(t *testing.T) {
	for _, tt := range decodeV2Cases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeV2Fast([]byte(tt.in))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("decodeV2Fast(%q) = %+v, want it left to the full decoder", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeV2Fast(%q) = %v, want the spec", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodeV2Fast(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
