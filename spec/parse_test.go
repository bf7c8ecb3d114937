package spec

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const yamlMachines = `# machines for the web fleet
- name: web
  source: https://example.net/web.tgz
  checksum: ` + sumArchive + `
  verify_checksum: ` + sumSums + `
  match: identity('^web')
  size: 1024
  auth: reader
- name: db
  source: nats://ARCHIVES/db.tgz
  checksum: ` + sumArchive + `
  verify_checksum: ` + sumSums + `
  username: bob
  password: ~
`

type parseCase struct {
	name   string
	in     string
	want   []Machine
	errors []string
}

// parseMachinesCases is the table for ParseMachines; FuzzParseMachines is
// seeded from it.
func parseMachinesCases() []parseCase {
	web := Machine{Name: "web", Source: "https://example.net/web.tgz", Checksum: sumArchive, VerifyChecksum: sumSums, Match: "identity('^web')", Size: 1024, Auth: "reader"}
	db := Machine{Name: "db", Source: "nats://ARCHIVES/db.tgz", Checksum: sumArchive, VerifyChecksum: sumSums, Username: "bob"}
	return []parseCase{
		{name: "choria machines.json", in: choriaMachines, want: []Machine{choriaMachine()}},
		{name: "json with a byte order mark", in: "\ufeff" + choriaMachines, want: []Machine{choriaMachine()}},
		{name: "yaml list", in: yamlMachines, want: []Machine{web, db}},
		{name: "empty json list", in: " []\n", want: []Machine{}},
		{name: "empty yaml flow list after a comment", in: "# none yet\n[]\n", want: []Machine{}},
		{name: "yaml scalars keep their text", in: "- name: 0123\n  governor: true\n  size: 0x10\n", want: []Machine{{Name: "0123", Governor: "true", Size: 16}}},
		{name: "yaml alias", in: "- &w {name: web}\n- *w\n", want: []Machine{{Name: "web"}, {Name: "web"}}},
		{name: "yaml steering fields", in: "- name: web\n  hold: identity('^web3$')\n  health: {states: [ready], within: 1m}\n" +
			"  rollout: {waves: [100%], max_failed: 10%, min_done: 5, paused: true}\n- name: db\n  rollout: {waves: [100%], max_failed: 1}\n",
			want: []Machine{{Name: "web", Hold: "identity('^web3$')", Health: &Health{States: []string{"ready"}, Within: Duration(time.Minute)},
				Rollout: &Rollout{Waves: []string{"100%"}, MaxFailed: Budget{N: 10, Share: true}, MinDone: 5, Paused: true}},
				{Name: "db", Rollout: &Rollout{Waves: []string{"100%"}, MaxFailed: Budget{N: 1}}}}},
		{name: "empty file", in: " \n\t\n", errors: []string{`empty machines file: write [] for an empty list`}},
		{name: "comment only", in: "# nothing\n", errors: []string{`empty machines file: write [] for an empty list`}},
		{name: "json typo", in: "[\n {\n  \"name\": \"web\",\n  \"chekcsum\": \"x\"\n }\n]", errors: []string{
			`machine[0] "web": line 4: unknown field "chekcsum"; did you mean "checksum"?`,
		}},
		{name: "json syntax error", in: "[\n {\"name\": \"web\",}\n]", errors: []string{
			`invalid JSON at line 2, column 17: invalid character '}' looking for beginning of object key string`,
		}},
		{name: "json problems in several entries", in: "[\n{\"name\":\"a\"},\n{\"name\":\"web\",\n \"size\":\"big\",\n \"name\":\"x\"},\n 7\n]", errors: []string{
			`machine[1] "web": line 4: size: want an integer, got "big"`,
			`machine[1] "web": line 5: repeated field "name"`,
			`machine[2]: line 6: want an object, got 7`,
		}},
		{name: "json object", in: "\n{\"machines\": []}", errors: []string{`line 2: want a JSON list of machines, got an object`}},
		{name: "yaml typo", in: "- name: db\n  source: x\n- name: web\n  source: y\n  chekcsum: abc\n", errors: []string{
			`machine[1] "web": line 5: unknown field "chekcsum"; did you mean "checksum"?`,
		}},
		{name: "yaml wrong kinds", in: "- name: [web]\n  size: \"12\"\n  match: {a: 1}\n- just a string\n- \n", errors: []string{
			`machine[0]: line 1: name: want a string, got a list`,
			`machine[0]: line 2: size: want an integer, got "12"`,
			`machine[0]: line 3: match: want a string, got a mapping`,
			`machine[1]: line 4: want a mapping, got "just a string"`,
			`machine[2]: line 5: want a mapping, got null`,
		}},
		{name: "yaml repeated and merged fields", in: "- name: web\n  name: web2\n  <<: {source: x}\n  ? [a]\n  : b\n", errors: []string{
			`machine[0] "web": line 2: repeated field "name"`,
			`machine[0] "web": line 3: merge keys (<<) are not supported; write every field out`,
			`machine[0] "web": line 4: want a field name, got a list`,
		}},
		{name: "yaml size too big", in: "- size: 99999999999999999999\n", errors: []string{
			`machine[0]: line 1: size: want an integer, got 99999999999999999999`,
		}},
		{name: "yaml mapping", in: "machines:\n  - name: web\n", errors: []string{`line 1: want a list of machines, got a mapping`}},
		{name: "yaml syntax error", in: "- name: web\n\tsource: x\n", errors: []string{`invalid YAML: line 2: found a tab character that violates indentation`}},
		{name: "two yaml documents", in: "- name: a\n---\n- name: b\n", errors: []string{`line 2: more than one YAML document; want a single list of machines`}},
	}
}

func TestParseMachines(t *testing.T) {
	for _, tt := range parseMachinesCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMachines([]byte(tt.in))
			checkErrors(t, "ParseMachines()", err, tt.errors)
			if tt.errors != nil {
				if got != nil {
					t.Errorf("ParseMachines() = %+v with an error, want nil", got)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseMachines() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseThenValidate shows the operator flow: the file parses with every
// field, and the version policy is applied by validation.
func TestParseThenValidate(t *testing.T) {
	ms, err := ParseMachines([]byte(yamlMachines))
	if err != nil {
		t.Fatalf("ParseMachines() err = %v", err)
	}
	checkErrors(t, "ValidateMachines(v2)", ValidateMachines(ms, ValidateOptions{}), []string{
		`machine[1] "db": username: only allowed in v1 (legacy) specs; name a node-local credential in auth instead`,
	})
	checkErrors(t, "ValidateMachines(v1)", ValidateMachines(ms, ValidateOptions{Legacy: true}), []string{
		`machine[0] "web": size: not supported in v1 (legacy) specs`,
		`machine[0] "web": auth: not supported in v1 (legacy) specs`,
	})
}
