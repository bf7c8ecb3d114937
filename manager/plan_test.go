package manager

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/spec"
)

// planned is "name action [wave k] [held...]" per entry of a plan.
func planned(p PlanReply) []string {
	var out []string
	for _, e := range p.Entries {
		s := e.Name + " " + string(e.Action)
		if e.Wave > 0 {
			s += fmt.Sprintf(" wave %d", e.Wave)
		}
		if e.Held != "" {
			s += " (" + e.Held + ")"
		}
		out = append(out, s)
	}
	return out
}

// TestPlanPredictsThePass: a node that runs web 1 and old plans a spec
// with web 2 in a rollout (wave 2, waiting for wave 1), db new, a skipped
// entry, a held one and none of old: the plan says upgrade, install, skip,
// hold and purge, and changes nothing (no download, no ledger record, the
// same machines). A plan of the spec it runs says no change; of an older
// serial, that it would ignore it. The real pass then does what the plan
// said.
func TestPlanPredictsThePass(t *testing.T) {
	view := &fleet{}
	f := newFixture(t, func(c *ReconcilerConfig) { c.Fleet = view })
	web1, old := f.entry("web", "1", ""), f.entry("old", "1", "")
	f.pass(f.seal(10, web1, old), []string{"web installed", "old installed"}, "old@1", "web@1")
	downloads := f.inst.downloads

	web2 := gated(f.entry("web", "2", ""))
	web2.Rollout = &spec.Rollout{Waves: []string{"1", "100%"}}
	other := ""
	for i := 2; other == ""; i++ {
		if o := fmt.Sprintf("web%d.example.net", i); rollout.Assign([]string{"web1.example.net", o}, "web", web2.Checksum, mustWaves(t, web2.Rollout.Waves))[0][0] == o {
			other = o
		}
	}
	view.nodes = []rollout.Node{{Identity: "web1.example.net", Checksum: web1.Checksum, Health: rollout.Healthy}, {Identity: other, Checksum: web1.Checksum, Health: rollout.Healthy}}
	db := f.entry("db", "1", "")
	skipped := f.entry("cache", "1", "identity('^db')")
	held := f.entry("batch", "1", "")
	held.Hold = "facts.role == 'web'"
	env := f.seal(11, web2, db, skipped, held)

	p := f.r.Plan(t.Context(), env)
	want := []string{
		"web upgrade wave 2 (held: waiting for wave 1 (node " + other + " is not on the new version yet))",
		"db install", "cache skip", "batch hold", "old purge",
	}
	if diff := cmp.Diff(want, planned(p)); diff != "" || p.Refused != "" || p.Serial != 11 || p.Refuses() {
		t.Fatalf("Plan() = %+v\n(-want +got):\n%s", p, diff)
	}
	if e := p.Entries[0]; e.Installed != web1.Checksum || e.Checksum != web2.Checksum || e.InstalledVersion != web1.Checksum {
		t.Errorf("web's plan = %+v, want from 1 (running) to 2", e)
	}
	if e := p.Entries[2]; e.Reason != `match "identity('^db')" does not select this node` {
		t.Errorf("cache's plan = %+v, want why it is skipped", e)
	}
	if f.inst.downloads != downloads || !slices.Equal(f.running(), []string{"old@1", "web@1"}) {
		t.Errorf("the plan downloaded %d archives, runs %v; want nothing changed", f.inst.downloads-downloads, f.running())
	}

	// The plan recorded nothing: the spec it planned is still news, and
	// a plan of the spec that runs changes nothing.
	if p := f.r.Plan(t.Context(), f.seal(10, web1, old)); !slices.Equal(planned(p), []string{"web no_change", "old no_change"}) {
		t.Errorf("plan of the running spec = %v, want no change", planned(p))
	}
	if p := f.r.Plan(t.Context(), f.seal(9, web1)); p.Refused != RejectReplayed || !p.Refuses() || len(p.Entries) != 0 {
		t.Errorf("plan of an older serial = %+v, want it refused as a replay", p)
	}
	bad := f.entry("bad", "1", "get_fact('role') > 3")
	if p := f.r.Plan(t.Context(), f.seal(12, bad)); !p.Refuses() || p.Entries[0].Action != PlanRefuse || !strings.Contains(p.Entries[0].Reason, "get_fact('role') > 3") {
		t.Errorf("plan of an entry whose matcher fails = %+v, want refuse", p)
	}

	// The pass does what the plan said.
	rep := f.pass(env, []string{"web held", "db installed", "cache skipped", "batch held", "old purged"}, "db@1", "web@1")
	if r := result(t, rep, "web"); r.Wave != 2 {
		t.Errorf("the pass put web in wave %d, the plan in 2", r.Wave)
	}
}

// planReplyCases is the table of TestParsePlanReply; FuzzParsePlanReply
// is seeded from it.
func planReplyCases() []struct{ in, err string } {
	return []struct{ in, err string }{
		{in: `{"identity":"web1","serial":3,"entries":[{"name":"web","action":"upgrade","checksum":"b","installed":"a","wave":2,"held":"held: waiting"}],"newer":1}`},
		{in: `{"identity":"web1","serial":3,"refused":"untrusted","reason":"spec signed by no trusted key"}`},
		{in: `{"serial":3,"entries":[]}`, err: "plan reply: no identity"},
		{in: `{"identity":"web1","entries":[{"name":"web","action":"explode"}]}`, err: `plan reply: entry 0 ("web"): unknown action "explode"`},
		{in: `{"identity":`, err: "plan reply: unexpected end of JSON input"},
		{in: `{"identity":"web1"}` + strings.Repeat(" ", MaxPlanReply), err: "over the 1048576 limit"},
	}
}

func TestParsePlanReply(t *testing.T) {
	for _, tt := range planReplyCases() {
		p, err := ParsePlanReply([]byte(tt.in))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParsePlanReply(%.60q) = %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParsePlanReply(%.60q) = %+v, %v; want %q", tt.in, p, err, tt.err)
		case err == nil && p.Entries == nil:
			t.Errorf("ParsePlanReply(%.60q) entries nil, want a list", tt.in)
		}
	}
}

// FuzzParsePlanReply: replies come from the network; parsing never
// panics, and what it accepts has an identity and known actions.
func FuzzParsePlanReply(f *testing.F) {
	for _, tt := range planReplyCases() {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlanReply(data)
		if err != nil {
			return
		}
		if p.Identity == "" || p.Entries == nil {
			t.Fatalf("ParsePlanReply accepted %+v", p)
		}
		for _, e := range p.Entries {
			if e.Action == "" {
				t.Fatalf("ParsePlanReply accepted an entry without an action: %+v", e)
			}
		}
	})
}
