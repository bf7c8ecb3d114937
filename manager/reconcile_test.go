package manager

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// step is one reconcile pass of a scenario and what it must leave behind.
type step struct {
	before   func(f *fixture)        // changes the node before the pass
	envelope func(f *fixture) []byte // the spec the pass gets
	opts     ReconcileOptions

	want      []string          // "name outcome" per result
	rejected  Rejection         // the spec's rejection, if any
	stale     bool              // the spec is stale
	reasons   map[string]string // "name outcome" → text its reason contains
	tampered  map[string]string // name → the file reported tampered
	running   []string          // "name@version" the host runs afterwards
	installed []string          // names with an install record afterwards
	downloads int               // archives fetched by this pass
}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*ReconcilerConfig)
		steps     []step
	}{
		{name: "install two", steps: []step{{
			envelope:  func(f *fixture) []byte { return f.seal(1, f.entry("web", "1", ""), f.entry("db", "1", "")) },
			want:      []string{"web installed", "db installed"},
			running:   []string{"db@1", "web@1"},
			installed: []string{"db", "web"},
			downloads: 2,
		}}},
		{name: "update one", steps: []step{
			installWebDB(),
			{
				envelope:  func(f *fixture) []byte { return f.seal(2, f.entry("web", "2", ""), f.entry("db", "1", "")) },
				want:      []string{"web updated", "db unchanged"},
				running:   []string{"db@1", "web@2"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
		}},
		{name: "unchanged spec downloads nothing", steps: []step{
			installWebDB(),
			{
				envelope:  webDB,
				want:      []string{"web unchanged", "db unchanged"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "unchanged spec repairs a machine deleted by hand", steps: []step{
			installWebDB(),
			{
				before: func(f *fixture) {
					removeMachineDir(f, "web")
					f.host.UnloadMachine(f.t.Context(), "web")
				},
				envelope:  webDB,
				want:      []string{"web updated", "db unchanged"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
		}},
		{name: "skipped by matcher", steps: []step{{
			envelope: func(f *fixture) []byte {
				return f.seal(1, f.entry("web", "1", "identity('^web')"), f.entry("db", "1", "identity('^db')"))
			},
			want:      []string{"web installed", "db skipped"},
			reasons:   map[string]string{"db skipped": `match "identity('^db')" does not select this node`},
			running:   []string{"web@1"},
			installed: []string{"web"},
			downloads: 1,
		}}},
		{name: "a matcher run error on a node that never installed the machine says so", steps: []step{{
			envelope: func(f *fixture) []byte {
				return f.seal(1, f.entry("web", "1", "facts.cpus > 2"), f.entry("db", "1", ""))
			},
			want:      []string{"web failed", "db installed"},
			reasons:   map[string]string{"web failed": "(nothing was installed under this name)"},
			running:   []string{"db@1"},
			installed: []string{"db"},
			downloads: 1,
		}}},
		{name: "matcher run error is a failure and keeps the machine", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					return f.seal(2, f.entry("web", "1", "facts.cpus > 2"), f.entry("db", "1", ""))
				},
				want:      []string{"web failed", "db unchanged"},
				reasons:   map[string]string{"web failed": `match "facts.cpus > 2"`},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "an entry whose matcher does not compile fails alone", steps: []step{{
			// pack refuses such a spec; an agent given one signed acts on the
			// other entries and reports this one, as Choria's watcher skips it.
			envelope: func(f *fixture) []byte {
				return f.seal(1, f.entry("web", "1", ""), f.entry("db", "1", "has_comand('x')"))
			},
			want:      []string{"web installed", "db failed"},
			reasons:   map[string]string{"db failed": `invalid entry (nothing was installed under this name): machine "db": match: column 1: unknown name has_comand; did you mean "has_command"?`},
			running:   []string{"web@1"},
			installed: []string{"web"},
			downloads: 1,
		}}},
		{name: "a matcher that runs out of time fails and keeps its machine (issue 18.6)", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					return f.seal(2, f.entry("web", "1", `none(1..999999, identity("^x" + string(#)))`), f.entry("db", "1", ""))
				},
				want:      []string{"web failed", "db unchanged"},
				reasons:   map[string]string{"web failed": "matcher ran out of time: stopped after 1s (the installed copy is kept)"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "one invalid entry does not block the others and keeps its machine", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					bad := f.entry("db", "2", "")
					bad.Checksum = "abc"
					return f.seal(2, f.entry("web", "2", ""), bad)
				},
				want:      []string{"web updated", "db failed"},
				reasons:   map[string]string{"db failed": "invalid entry (the installed copy is kept): machine \"db\": checksum: want 64 lowercase hex characters"},
				running:   []string{"db@1", "web@2"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
		}},
		{name: "an entry with an invalid name purges nothing (issue 18.9)", steps: []step{
			installWebDB(),
			{
				// "wеb" with a Cyrillic е: which installed machine the
				// entry means is unknown, so none is purged.
				envelope: func(f *fixture) []byte {
					return f.seal(2, f.entry("w\u0435b", "2", ""), f.entry("db", "1", ""))
				},
				want:      []string{"w\u0435b failed", "db unchanged"},
				reasons:   map[string]string{"w\u0435b failed": "invalid entry (nothing was installed under this name; nothing is purged while an entry's name is invalid)"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
			{
				// Fixed: the spec's entries are valid again, so web,
				// no longer in it, is purged as usual.
				envelope:  func(f *fixture) []byte { return f.seal(3, f.entry("db", "1", "")) },
				want:      []string{"db unchanged", "web purged"},
				running:   []string{"db@1"},
				installed: []string{"db"},
			},
		}},
		{name: "install failure does not block the others", steps: []step{{
			before:    func(f *fixture) { f.inst.installErr["db"] = errors.New("fetch: HTTP 404") },
			envelope:  webDB,
			want:      []string{"web installed", "db failed"},
			reasons:   map[string]string{"db failed": "install: fetch: HTTP 404"},
			running:   []string{"web@1"},
			installed: []string{"web"},
			downloads: 2,
		}}},
		{name: "new version that fails to load is rolled back and not retried", steps: []step{
			installWebDB(),
			{
				before:    func(f *fixture) { f.host.failLoad[f.entry("web", "2", "").Checksum] = errLoad },
				envelope:  webV2DB,
				want:      []string{"web rolled_back", "db unchanged"},
				reasons:   map[string]string{"web rolled_back": "failed to load"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
			{
				envelope:  webV2DB,
				want:      []string{"web failed", "db unchanged"},
				reasons:   map[string]string{"web failed": "not tried again"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
			{
				envelope:  func(f *fixture) []byte { return f.seal(3, f.entry("web", "3", ""), f.entry("db", "1", "")) },
				want:      []string{"web updated", "db unchanged"},
				running:   []string{"db@1", "web@3"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
		}},
		{name: "first install that fails to load is removed again", steps: []step{
			{
				before:    func(f *fixture) { f.host.failLoad[f.entry("web", "1", "").Checksum] = errLoad },
				envelope:  webDB,
				want:      []string{"web failed", "db installed"},
				reasons:   map[string]string{"web failed": "removed again"},
				running:   []string{"db@1"},
				installed: []string{"db"},
				downloads: 2,
			},
			{
				envelope:  webDB,
				want:      []string{"web failed", "db unchanged"},
				running:   []string{"db@1"},
				installed: []string{"db"},
			},
		}},
		{name: "purge on removal from the spec", steps: []step{
			installWebDB(),
			{
				envelope:  func(f *fixture) []byte { return f.seal(2, f.entry("web", "1", "")) },
				want:      []string{"web unchanged", "db purged"},
				reasons:   map[string]string{"db purged": "not in the spec"},
				running:   []string{"web@1"},
				installed: []string{"web"},
			},
		}},
		{name: "purge when the matcher no longer selects the node", steps: []step{
			{
				envelope:  webByRoleDB,
				want:      []string{"web installed", "db installed"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
				downloads: 2,
			},
			{
				before:    func(f *fixture) { f.setFacts(map[string]any{"role": "db"}) },
				envelope:  webByRoleDB,
				want:      []string{"web skipped", "db unchanged", "web purged"},
				reasons:   map[string]string{"web purged": "no longer selects this node"},
				running:   []string{"db@1"},
				installed: []string{"db"},
			},
		}},
		{name: "validly signed empty spec purges everything installed", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte { return f.seal(2) },
				want:     []string{"db purged", "web purged"},
			},
		}},
		{name: "purge only touches machines with an install record", steps: []step{
			{
				before:    handmade,
				envelope:  func(f *fixture) []byte { return f.seal(1, f.entry("web", "1", "")) },
				want:      []string{"web installed"},
				running:   []string{"hand@manual", "web@1"},
				installed: []string{"web"},
				downloads: 1,
			},
			{
				envelope: func(f *fixture) []byte { return f.seal(2) },
				want:     []string{"web purged"},
				running:  []string{"hand@manual"},
			},
		}},
		{name: "without purge_unknown nothing is purged", configure: func(c *ReconcilerConfig) { c.PurgeUnknown = false }, steps: []step{
			installWebDB(),
			{
				envelope:  func(f *fixture) []byte { return f.seal(2) },
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "unknown key changes nothing", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					_, other, _ := packer.GenerateKey(nil)
					return f.sealSpec(&spec.Spec{Serial: 2, IssuedAt: f.clock(), Machines: []spec.Machine{}}, other)
				},
				rejected:  RejectUnknownKey,
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "bad signature changes nothing", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					return corruptSignature(f.t, f.sealSpec(&spec.Spec{Serial: 2, IssuedAt: f.clock(), Machines: []spec.Machine{}}))
				},
				rejected:  RejectBadSignature,
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "replayed older spec is ignored", steps: []step{
			{
				envelope:  func(f *fixture) []byte { return f.seal(5, f.entry("web", "1", "")) },
				want:      []string{"web installed"},
				running:   []string{"web@1"},
				installed: []string{"web"},
				downloads: 1,
			},
			{
				envelope:  func(f *fixture) []byte { return f.seal(4) },
				rejected:  RejectReplayed,
				running:   []string{"web@1"},
				installed: []string{"web"},
			},
		}},
		{name: "equivocation changes nothing", steps: []step{
			{
				envelope:  func(f *fixture) []byte { return f.seal(5, f.entry("web", "1", "")) },
				want:      []string{"web installed"},
				running:   []string{"web@1"},
				installed: []string{"web"},
				downloads: 1,
			},
			{
				envelope:  func(f *fixture) []byte { return f.seal(5) },
				rejected:  RejectEquivocation,
				running:   []string{"web@1"},
				installed: []string{"web"},
			},
		}},
		{name: "expired new spec changes nothing", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					now := f.clock()
					return f.sealSpec(&spec.Spec{Serial: 2, IssuedAt: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour), Machines: []spec.Machine{}})
				},
				rejected:  RejectExpired,
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "malformed envelope changes nothing", steps: []step{
			installWebDB(),
			{
				envelope:  func(*fixture) []byte { return []byte(`{"payloadType":`) },
				rejected:  RejectMalformed,
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "stale current spec keeps running, repairs and purges nothing", steps: []step{
			{
				envelope:  expiringWebByRoleDB,
				want:      []string{"web installed", "db installed"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
				downloads: 2,
			},
			{
				before: func(f *fixture) {
					f.advance(2 * time.Hour)
					f.setFacts(map[string]any{"role": "db"})
					removeMachineDir(f, "db")
				},
				envelope:  expiringWebByRoleDB,
				want:      []string{"web skipped", "db updated"},
				stale:     true,
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
		}},
		{name: "duplicate names fail both and keep the installed machine", steps: []step{
			installWebDB(),
			{
				envelope: func(f *fixture) []byte {
					return f.seal(2, f.entry("web", "2", ""), f.entry("web", "3", ""), f.entry("db", "1", ""))
				},
				want:      []string{"web failed", "web failed", "db unchanged"},
				reasons:   map[string]string{"web failed": "duplicate"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "reserved name fails", configure: func(c *ReconcilerConfig) { c.Reserved = func(n string) bool { return n == "manager" } }, steps: []step{{
			envelope:  func(f *fixture) []byte { return f.seal(1, f.entry("manager", "1", ""), f.entry("web", "1", "")) },
			want:      []string{"manager failed", "web installed"},
			reasons:   map[string]string{"manager failed": "reserved"},
			running:   []string{"web@1"},
			installed: []string{"web"},
			downloads: 1,
		}}},
		{name: "tampered machine is reported and reinstalled", steps: []step{
			installWebDB(),
			{
				before: func(f *fixture) {
					p := filepath.Join(f.inst.dir, "web", packer.MachineFile)
					data, err := os.ReadFile(p)
					if err != nil {
						f.t.Fatal(err)
					}
					if err := os.WriteFile(p, append(data, "# evil\n"...), 0o644); err != nil {
						f.t.Fatal(err)
					}
				},
				envelope:  webDB,
				opts:      ReconcileOptions{Verify: VerifyFull},
				want:      []string{"web updated", "db unchanged"},
				reasons:   map[string]string{"web updated": "tampered (machine.yaml); reinstalled"},
				tampered:  map[string]string{"web": "machine.yaml"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
				downloads: 1,
			},
		}},
		{name: "tampered machine the installer does not replace fails", steps: []step{
			installWebDB(),
			{
				before: func(f *fixture) {
					f.inst.trustTree = true
					if err := os.WriteFile(filepath.Join(f.inst.dir, "db", "extra"), []byte("x"), 0o644); err != nil {
						f.t.Fatal(err)
					}
				},
				envelope:  webDB,
				opts:      ReconcileOptions{Verify: VerifyQuick},
				want:      []string{"web unchanged", "db failed"},
				reasons:   map[string]string{"db failed": "tampered (extra), but the installer found nothing to reinstall"},
				tampered:  map[string]string{"db": "extra"},
				running:   []string{"db@1", "web@1"},
				installed: []string{"db", "web"},
			},
		}},
		{name: "legacy v1 spec when allowed", configure: func(c *ReconcilerConfig) { c.Trust = trustOf(TrustConfig{Keys: c.Trust.Keys(), AllowV1: true}) }, steps: []step{{
			envelope: func(f *fixture) []byte {
				env, err := packer.Seal(packer.FormatV1, &spec.Spec{Machines: []spec.Machine{f.entry("web", "1", "")}}, f.priv)
				if err != nil {
					f.t.Fatal(err)
				}
				return env
			},
			want:      []string{"web installed"},
			running:   []string{"web@1"},
			installed: []string{"web"},
			downloads: 1,
		}}},
		{name: "legacy v1 spec refused by default", steps: []step{{
			envelope: func(f *fixture) []byte {
				env, err := packer.Seal(packer.FormatV1, &spec.Spec{Machines: []spec.Machine{f.entry("web", "1", "")}}, f.priv)
				if err != nil {
					f.t.Fatal(err)
				}
				return env
			},
			rejected: RejectLegacy,
		}}},
		{name: "unsigned spec only in insecure mode", configure: func(c *ReconcilerConfig) { c.Trust = trustOf(TrustConfig{Unsigned: true}) }, steps: []step{{
			envelope: func(f *fixture) []byte {
				env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 1, IssuedAt: f.clock(), Machines: []spec.Machine{f.entry("web", "1", "")}})
				if err != nil {
					f.t.Fatal(err)
				}
				return env
			},
			want:      []string{"web installed"},
			running:   []string{"web@1"},
			installed: []string{"web"},
			downloads: 1,
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.configure)
			for i, st := range tt.steps {
				runStep(t, f, i+1, st)
			}
		})
	}
}
