package machineswatcher

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/machine"
	_ "github.com/mms-io/mms/watchers/kv"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/watchers"
)

const validKey = "64031219d4922eed63a5f567303e98607c632139c01bc9fa4ca2514c2d9d30da"

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		props   string
		wantErr string
		verify  time.Duration // the full re-verification interval, when not the default
	}{
		{name: "minimal", props: `{"data_item":"spec","public_keys":["` + validKey + `"]}`},
		{name: "all", props: `{"data_item":"spec","purge_unknown":true,"public_keys":["` + validKey + `"],"threshold":1,"allow_legacy_spec":true,"allow_http":true,"state_dir":"/var/lib/mms/manager","verify_interval":"2h","machines_dir":"/etc/mms/machines"}`},
		{name: "choria public_key", props: `{"data_item":"spec","public_key":"` + validKey + `"}`},
		{name: "insecure without keys", props: `{"data_item":"spec","insecure_unsigned":true}`},
		{name: "missing data_item", props: `{"public_keys":["` + validKey + `"]}`, wantErr: "data_item: required"},
		{name: "no keys", props: `{"data_item":"spec"}`, wantErr: "public_keys: at least one trusted key is required"},
		{name: "bad key", props: `{"data_item":"spec","public_keys":["abc"]}`, wantErr: "public_keys[0]"},
		{name: "bad choria key", props: `{"data_item":"spec","public_key":"zz"}`, wantErr: "public_key:"},
		{name: "threshold above keys", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"threshold":2}`, wantErr: "threshold 2 exceeds the 1 distinct trusted key"},
		{name: "threshold above distinct keys", props: `{"data_item":"spec","public_keys":["` + validKey + `","` + strings.ToUpper(validKey) + `"],"threshold":2}`, wantErr: "threshold 2 exceeds the 1 distinct trusted key"},
		{name: "Choria's MachineManageInterval", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"MachineManageInterval":"2m"}`, verify: 2 * time.Minute},
		{name: "Choria's documented machine_manage_interval", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"machine_manage_interval":"10m"}`, verify: 10 * time.Minute},
		{name: "agreeing spellings", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"verify_interval":"5m","MachineManageInterval":"5m"}`, verify: 5 * time.Minute},
		{name: "disagreeing spellings", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"verify_interval":"5m","machine_manage_interval":"10m"}`, wantErr: "machine_manage_interval: 10m0s disagrees with verify_interval: 5m0s"},
		{name: "Choria interval below the minimum", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"MachineManageInterval":"30s"}`, wantErr: "MachineManageInterval: 30s is below the minimum of 1m0s"},
		{name: "negative threshold", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"threshold":-1}`, wantErr: "threshold -1 is negative"},
		{name: "relative state_dir", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"state_dir":"state"}`, wantErr: "state_dir: \"state\" must be an absolute path"},
		{name: "relative machines_dir", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"machines_dir":"m"}`, wantErr: "machines_dir"},
		{name: "short verify_interval", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"verify_interval":"10s"}`, wantErr: "verify_interval: 10s is below the minimum"},
		{name: "unknown field", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"machine_manage_intervall":"5m"}`, wantErr: `unknown field "machine_manage_intervall"`},
		{name: "wrong type", props: `{"data_item":"spec","public_keys":"` + validKey + `"}`, wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := watchers.Build("machines", json.RawMessage(tt.props))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Build(machines, %s) = %v, want error containing %q", tt.props, err, tt.wantErr)
			}
			if tt.verify != 0 && w.(*Watcher).verifyEvery != tt.verify {
				t.Errorf("Build(machines, %s) verifies in full every %v, want %v", tt.props, w.(*Watcher).verifyEvery, tt.verify)
			}
		})
	}
}

// check is one Check of a scenario: the data item before it and what the
// check must report.
type check struct {
	item      any // the data item's value; nil deletes it
	outcome   watchers.Outcome
	wantErr   bool
	rejected  manager.Rejection
	results   []string // "name outcome"
	machines  []string // State.Machines
	installed []string // names with an install record afterwards
}

func TestCheck(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","purge_unknown":true,"public_keys":["KEY"]}`)
	// A machine installed by an earlier run of the agent.
	n.inst.records["old"] = manager.Record{Name: "old", Checksum: sum64("old"), VerifyChecksum: sum64("old"), Phase: manager.PhaseInstalled}
	v1, v2bad, v3, v4 := n.envelope(1, "web"), badEntry(t, n), n.envelope(3, "web", "db"), n.envelope(4, "web", "db")
	steps := []struct {
		name string
		check
	}{
		{"missing data item reports and never purges", check{outcome: watchers.Report, rejected: manager.RejectMissing, machines: []string{}, installed: []string{"old"}}},
		{"still missing is not reported again", check{outcome: watchers.Unchanged, rejected: manager.RejectMissing, machines: []string{}, installed: []string{"old"}}},
		{"spec stored as a map installs and purges", check{item: asMap(t, v1), outcome: watchers.Success, results: []string{"web installed", "old purged"}, machines: []string{"web"}, installed: []string{"web"}}},
		{"same spec as a string is unchanged", check{item: string(v1), outcome: watchers.Unchanged, results: []string{"web unchanged"}, machines: []string{"web"}, installed: []string{"web"}}},
		{"bad entry fails", check{item: string(v2bad), outcome: watchers.Failure, results: []string{"web unchanged", "db failed"}, machines: []string{"web"}, installed: []string{"web"}}},
		{"the same failure is not reported again", check{item: string(v2bad), outcome: watchers.Unchanged, results: []string{"web unchanged", "db failed"}, machines: []string{"web"}, installed: []string{"web"}}},
		{"a fixed spec succeeds", check{item: asMap(t, v3), outcome: watchers.Success, results: []string{"web unchanged", "db installed"}, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"a new serial that changes nothing is reported", check{item: string(v4), outcome: watchers.Report, results: []string{"web unchanged", "db unchanged"}, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"the same spec again is unchanged", check{item: string(v4), outcome: watchers.Unchanged, results: []string{"web unchanged", "db unchanged"}, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"replayed older spec is a warning", check{item: asMap(t, v1), outcome: watchers.Report, rejected: manager.RejectReplayed, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"the same replay is not reported again", check{item: asMap(t, v1), outcome: watchers.Unchanged, rejected: manager.RejectReplayed, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"unexpected value type fails", check{item: 42.0, outcome: watchers.Failure, rejected: manager.RejectMalformed, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"garbage envelope fails", check{item: "not a spec", outcome: watchers.Failure, rejected: manager.RejectMalformed, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
		{"deleted key keeps everything", check{outcome: watchers.Report, rejected: manager.RejectMissing, machines: []string{"web", "db"}, installed: []string{"db", "web"}}},
	}
	for i, st := range steps {
		if st.item == nil {
			n.data.Delete("spec")
		} else if err := n.data.Put("spec", st.item); err != nil {
			t.Fatal(err)
		}
		res, err := n.w.Check(t.Context())
		if (err != nil) != st.wantErr {
			t.Fatalf("step %d (%s): Check() error = %v, want error %v", i+1, st.name, err, st.wantErr)
		}
		s, ok := res.State.(State)
		if !ok {
			t.Fatalf("step %d (%s): Check().State is a %T, want State", i+1, st.name, res.State)
		}
		got := check{item: st.item, outcome: res.Outcome, wantErr: st.wantErr, rejected: manager.Rejection(s.Rejected),
			results: resultStrings(s.Results), machines: s.Machines, installed: n.inst.names()}
		if diff := cmp.Diff(st.check, got, cmp.AllowUnexported(check{})); diff != "" {
			t.Errorf("step %d (%s): Check() (-want +got):\n%s\nstate: %+v", i+1, st.name, diff, s)
		}
	}
	if n.inst.recovers != 1 {
		t.Errorf("installer recovered %d times, want once before the first reconcile", n.inst.recovers)
	}
}

// badEntry is a serial 2 spec with web and an invalid db entry.
func badEntry(t *testing.T, n *node) []byte {
	t.Helper()
	env := n.envelope(2, "web", "db")
	opened, err := packer.Inspect(env)
	if err != nil {
		t.Fatal(err)
	}
	s := opened.Spec
	s.Machines[1].Checksum = "not-a-checksum"
	out, err := packer.Seal(packer.FormatV2, s, n.priv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func resultStrings(rs []manager.MachineResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name+" "+string(r.Outcome))
	}
	return out
}

func TestCheckStateEvent(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"]}`)
	if err := n.data.Put("spec", string(n.envelope(7, "web"))); err != nil {
		t.Fatal(err)
	}
	res, err := n.w.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res.State)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	delete(got, "previous_run_time")
	delete(got, "digest")
	if r, _ := got["results"].([]any); len(r) == 1 {
		if at, _ := r[0].(map[string]any)["healthy_at"].(string); at == "" {
			t.Errorf("result has no healthy_at: %v", r[0])
		}
		delete(r[0].(map[string]any), "healthy_at")
	}
	want := map[string]any{
		"machines": []any{"web"}, "previous_outcome": "updated", "serial": 7.0, "format": "v2", "stale": false,
		"results": []any{map[string]any{"name": "web", "outcome": "installed", "checksum": sum64("aweb"), "installed": sum64("aweb"), "health": "healthy"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state event data (-want +got):\n%s", diff)
	}
}

func TestCheckVerifiesInFullPeriodically(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"],"verify_interval":"1h"}`)
	if err := n.data.Put("spec", string(n.envelope(1, "web"))); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := n.w.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	n.w.lastFull = n.w.lastFull.Add(-2 * time.Hour) // the interval passed
	if _, err := n.w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]bool{true, false, false, true}, n.inst.verifies); diff != "" {
		t.Errorf("Verify(full) calls (-want +got):\n%s", diff)
	}
}

func TestCheckUnreadableLedgerIsAnError(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"]}`)
	if err := os.WriteFile(filepath.Join(n.settings.StateDir, manager.LedgerFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.data.Put("spec", string(n.envelope(1, "web"))); err != nil {
		t.Fatal(err)
	}
	res, err := n.w.Check(t.Context())
	if err == nil || res.State.(State).Rejected != string(manager.RejectError) {
		t.Fatalf("Check() with a corrupt ledger = %+v, %v; want an error", res, err)
	}
	if got := n.inst.names(); len(got) != 0 {
		t.Errorf("installed %v with a corrupt ledger, want nothing", got)
	}
}

func TestProvision(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"],"allow_http":true}`)
	want := manager.InstallSettings{MachinesDir: n.host.dir, StateDir: n.deps.Dir, AllowHTTP: true}
	got := n.settings
	got.Gate, got.Log, got.Conn = nil, nil, nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("installer settings (-want +got):\n%s", diff)
	}
	if _, err := n.settings.Gate(t.Context(), "downloads"); err == nil || !strings.Contains(err.Error(), "no NATS connection") {
		t.Errorf("Gate(downloads) without NATS = %v, want an error saying so", err)
	}

	tests := []struct {
		name    string
		change  func(*node)
		props   string
		wantErr string
	}{
		{name: "no host", change: func(n *node) { n.deps.Host = nil }, props: `{"data_item":"spec","public_keys":["` + validKey + `"]}`, wantErr: "needs the agent's machine host"},
		{name: "no data store", change: func(n *node) { n.deps.Data = nil }, props: `{"data_item":"spec","public_keys":["` + validKey + `"]}`, wantErr: "needs the machine's data store"},
		{name: "other machines dir", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"machines_dir":"/elsewhere"}`, wantErr: "is not the host's machines directory"},
		{name: "state dir created", props: `{"data_item":"spec","public_keys":["` + validKey + `"],"state_dir":"` + filepath.Join(t.TempDir(), "a", "b") + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newNode(t, `{"data_item":"spec","public_keys":["KEY"]}`)
			if tt.change != nil {
				tt.change(m)
			}
			_, err := m.build([]byte(tt.props))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Provision() = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.wantErr == "" {
				if st, err := os.Stat(m.settings.StateDir); err != nil || st.Mode().Perm() != 0o700 {
					t.Errorf("state dir %s: %v, %v; want a 0700 directory", m.settings.StateDir, st, err)
				}
			}
		})
	}
}

// TestResultOutcomes checks how reports map to outcomes, including the
// cases a signed spec cannot easily produce in a test.
func TestResultOutcomes(t *testing.T) {
	changedAndFailed := manager.PassReport{Serial: 2, Machines: []manager.MachineResult{
		{Name: "web", Outcome: manager.EntryUpdated}, {Name: "db", Outcome: manager.EntryFailed, Reason: "install: HTTP 404"},
	}}
	changedAndFailed.Err = errors.New(`machine "db": install: HTTP 404`)
	stale := manager.PassReport{Serial: 1, Stale: true, Machines: []manager.MachineResult{{Name: "web", Outcome: manager.EntryUnchanged}}}
	fresh := manager.PassReport{Serial: 1, Machines: []manager.MachineResult{{Name: "web", Outcome: manager.EntryUnchanged}}}
	broken := manager.PassReport{Rejected: manager.RejectError, Err: errors.New("read ledger: disk on fire")}
	tests := []struct {
		name    string
		reports []manager.PassReport
		want    []watchers.Outcome
		prev    []string
	}{
		{name: "a failure beats a change", reports: []manager.PassReport{changedAndFailed, changedAndFailed},
			want: []watchers.Outcome{watchers.Failure, watchers.Failure}, prev: []string{"error", "error"}},
		{name: "stale is reported once", reports: []manager.PassReport{fresh, stale, stale, fresh, stale},
			want: []watchers.Outcome{watchers.Unchanged, watchers.Report, watchers.Unchanged, watchers.Unchanged, watchers.Report},
			prev: []string{"unchanged", "unchanged", "unchanged", "unchanged", "unchanged"}},
		{name: "an unusable ledger is an error every time", reports: []manager.PassReport{broken, broken},
			want: []watchers.Outcome{watchers.Failure, watchers.Unchanged}, prev: []string{"error", "error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Watcher{}
			for i, rep := range tt.reports {
				res, err := w.result(rep, time.Now())
				if (err != nil) != (rep.Rejected == manager.RejectError) {
					t.Errorf("report %d: result() error = %v, want one only for RejectError", i, err)
				}
				if res.Outcome != tt.want[i] || res.State.(State).PreviousOutcome != tt.prev[i] {
					t.Errorf("report %d: result() = %v/%s, want %v/%s", i, res.Outcome, res.State.(State).PreviousOutcome, tt.want[i], tt.prev[i])
				}
			}
		})
	}
}

// TestCheckReportsSpecAfterRestart checks that a watcher's first check
// reports the spec it accepted even when nothing changes on disk (an agent
// restarted on an installed node), so the node's status learns its serial.
func TestCheckReportsSpecAfterRestart(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"]}`)
	if err := n.data.Put("spec", string(n.envelope(5, "web"))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The agent restarts: a new watcher over the same installer and data.
	w, err := n.build([]byte(strings.ReplaceAll(`{"data_item":"spec","public_keys":["KEY"]}`, "KEY", n.pubHex)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st := res.State.(State)
	if res.Outcome != watchers.Report || st.Serial != 5 || !slices.Equal(resultStrings(st.Results), []string{"web unchanged"}) {
		t.Errorf("first Check() after a restart = %v, serial %d, results %v; want report, 5, [web unchanged]", res.Outcome, st.Serial, resultStrings(st.Results))
	}
}

// reports is a manager.StatusReporter that keeps every report.
type reports struct{ got []manager.PassReport }

func (r *reports) ReportPass(rep manager.PassReport) { r.got = append(r.got, rep) }

// TestCheckReportsEveryPassToStatus checks the typed path to the status
// document: every check reports, even those whose events are de-duplicated,
// and a refused older spec leaves the applied spec as it was.
func TestCheckReportsEveryPassToStatus(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","public_keys":["KEY"]}`)
	status := &reports{}
	n.w.Status = status
	check := func(item any) manager.PassReport {
		t.Helper()
		if err := n.data.Put("spec", item); err != nil {
			t.Fatal(err)
		}
		before := len(status.got)
		if _, err := n.w.Check(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(status.got) != before+1 {
			t.Fatalf("Check() made %d status reports, want 1", len(status.got)-before)
		}
		return status.got[len(status.got)-1]
	}
	v5 := n.envelope(5, "web")
	if rep := check(string(v5)); rep.Applied.Serial != 5 || rep.Serial != 5 || rep.Rejected != "" || rep.Applied.AcceptedAt.IsZero() {
		t.Errorf("report of an accepted spec = %+v, want serial 5 applied", rep)
	}
	check(string(v5)) // unchanged: no event, still a report
	old := check(string(n.envelope(3, "web")))
	if old.Rejected != manager.RejectReplayed || old.Serial != 3 || old.Applied.Serial != 5 {
		t.Errorf("report of an older spec = %+v, want serial 3 refused as replayed and 5 still applied", old)
	}
	n.data.Delete("spec")
	if _, err := n.w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if last := status.got[len(status.got)-1]; last.Rejected != manager.RejectMissing || last.Applied.Serial != 5 {
		t.Errorf("report without a spec = %+v, want spec_missing with 5 applied", last)
	}
}

// TestChoriaManagersLoad loads machines in the shape of Choria's stock
// machines manager (machine/testdata/choria) and of the seed's example
// (machine/testdata): their kv and machines watchers and properties,
// machine_manage_interval included, and the seed's repeated state_match (a
// warning, not an error).
func TestChoriaManagersLoad(t *testing.T) {
	tests := []struct {
		file     string
		watcher  int
		verify   time.Duration
		warnings []string
	}{
		{file: "choria/machines-manager.yaml", watcher: 2, verify: 5 * time.Minute},
		{file: "choria/shipped-manager.yaml", watcher: 2, verify: 5 * time.Minute},
		{file: "seed-manager.yaml", watcher: 1, verify: time.Minute,
			warnings: []string{`line 33: "state_match" repeats line 30 with the same value; the copy is ignored`}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "machine", "testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			def, err := machine.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			built, err := def.BuildWatchers()
			if err != nil {
				t.Fatalf("%s does not load: %v", tt.file, err)
			}
			if w := built[tt.watcher].(*Watcher); w.verifyEvery != tt.verify || !w.PurgeUnknown {
				t.Errorf("machines watcher = %+v, want machine_manage_interval %v honoured and purge_unknown", w, tt.verify)
			}
			if diff := cmp.Diff(tt.warnings, def.Warnings); diff != "" {
				t.Errorf("Warnings (-want +got):\n%s", diff)
			}
		})
	}
}
