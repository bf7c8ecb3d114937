package schedulewatcher

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

var validateTests = []struct {
	name     string
	props    string
	err      string
	duration time.Duration
}{
	{name: "cron", props: `{"schedules":["0 12 * * 1-5"],"duration":"1h"}`, duration: time.Hour},
	{name: "descriptors", props: `{"schedules":["@daily","@hourly","@weekly","@monthly","@yearly","@annually","@midnight"],"duration":"10m"}`, duration: 10 * time.Minute},
	{name: "zone prefix", props: `{"schedules":["CRON_TZ=Europe/Berlin 0 2 * * *","TZ=UTC 0 3 * * *"]}`, duration: time.Minute},
	{name: "everything", props: `{"schedules":["*/5 * * * *"],"duration":"2m","start_splay":"1m","skip_trigger_on_reenter":true,"timezone":"UTC"}`, duration: 2 * time.Minute},
	{name: "default duration", props: `{"schedules":["@daily"]}`, duration: DefaultDuration},
	{name: "under a second becomes the default", props: `{"schedules":["@daily"],"duration":"500ms"}`, duration: DefaultDuration},
	{name: "long window", props: `{"schedules":["* * * * *"],"duration":"10000w"}`, duration: 10000 * 7 * 24 * time.Hour},
	{name: "longest splay", props: `{"schedules":["* * * * *"],"duration":"2d","start_splay":"24h"}`, duration: 48 * time.Hour},
	{name: "leap day fires", props: `{"schedules":["0 0 29 2 *"]}`, duration: time.Minute},
	{name: "missing schedules", props: `{"duration":"1h"}`, err: "properties: schedules: required"},
	{name: "empty schedules", props: `{"schedules":[]}`, err: "properties: schedules: required"},
	{name: "typo", props: `{"schedule":["@daily"]}`, err: `properties: json: unknown field "schedule"`},
	{name: "not a list", props: `{"schedules":"@daily"}`, err: "properties: json: cannot unmarshal string into Go struct field Watcher.schedules of type []string"},
	{name: "out of range", props: `{"schedules":["61 * * * *"]}`, err: `properties: schedules[0] "61 * * * *": end of range (61) above maximum (59): 61`},
	{name: "six fields", props: `{"schedules":["0 0 12 * * *"]}`, err: `properties: schedules[0] "0 0 12 * * *": expected exactly 5 fields, found 6: [0 0 12 * * *]`},
	{name: "every", props: `{"schedules":["@every 1h"]}`, err: `properties: schedules[0] "@every 1h": @every is not supported: windows need fixed start times; use a cron expression`},
	{name: "unknown descriptor", props: `{"schedules":["@fortnightly"]}`, err: `properties: schedules[0] "@fortnightly": unrecognized descriptor: @fortnightly`},
	{name: "zone without schedule", props: `{"schedules":["TZ=UTC"]}`, err: `properties: schedules[0] "TZ=UTC": a time zone prefix needs a schedule after it`},
	{name: "bad zone prefix", props: `{"schedules":["CRON_TZ=Nowhere/Land 0 * * * *"]}`, err: `properties: schedules[0] "CRON_TZ=Nowhere/Land 0 * * * *": provided bad location Nowhere/Land: unknown time zone Nowhere/Land`},
	{name: "never fires", props: `{"schedules":["0 0 30 2 *"]}`, err: `properties: schedules[0] "0 0 30 2 *": never fires`},
	{name: "empty schedule", props: `{"schedules":["@daily",""]}`, err: `properties: schedules[1] "": empty spec string`},
	{name: "bad timezone", props: `{"schedules":["@daily"],"timezone":"Mars/Olympus"}`, err: "properties: timezone: unknown time zone Mars/Olympus"},
	{name: "splay too long", props: `{"schedules":["@daily"],"duration":"1h","start_splay":"31m"}`, err: "properties: start_splay: 31m0s is more than half the duration 1h0m0s"},
	{name: "splay above the maximum", props: `{"schedules":["@daily"],"duration":"10d","start_splay":"25h"}`, err: "properties: start_splay: 25h0m0s is more than the maximum 24h0m0s"},
	{name: "splay against the default duration", props: `{"schedules":["@daily"],"start_splay":"31s"}`, err: "properties: start_splay: 31s is more than half the duration 1m0s"},
	{name: "every problem", props: `{"schedules":["x","@every 1m"],"timezone":"Nowhere"}`, err: "properties: timezone: unknown time zone Nowhere\n" +
		`schedules[0] "x": expected exactly 5 fields, found 1: [x]` + "\n" +
		`schedules[1] "@every 1m": @every is not supported: windows need fixed start times; use a cron expression`},
}

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := watchers.Build("schedule", json.RawMessage(tt.props))
			if got := errString(err); got != tt.err {
				t.Fatalf("Build(schedule, %s) err = %q, want %q", tt.props, got, tt.err)
			}
			if err != nil {
				return
			}
			sw := w.(*Watcher)
			if sw.duration != tt.duration {
				t.Errorf("Build(schedule, %s) duration = %v, want %v", tt.props, sw.duration, tt.duration)
			}
			if len(sw.specs) != len(sw.Schedules) {
				t.Errorf("Build(schedule, %s) parsed %d of %d schedules", tt.props, len(sw.specs), len(sw.Schedules))
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func build(t *testing.T, props string, start time.Time) (*Watcher, *clock) {
	t.Helper()
	c := &clock{t: start}
	w := watchertest.Build(t, "schedule", props).(*Watcher)
	w.now = c.now
	return w, c
}

// edge is a check that was not Unchanged.
type edge struct {
	At      string
	Outcome watchers.Outcome
	State   string
}

func check(t *testing.T, w *Watcher) watchers.Result {
	t.Helper()
	res, err := w.Check(t.Context())
	if err != nil {
		t.Fatalf("Check() err = %v", err)
	}
	if res.After <= 0 || res.After > MaxRecheck {
		t.Fatalf("Check() at %v: After = %v, want in (0, %v]", w.now(), res.After, MaxRecheck)
	}
	return res
}

// simulate checks w the way the Runner does, at the start and then after
// each Result.After, until end, and returns the edges.
func simulate(t *testing.T, w *Watcher, c *clock, end time.Time) []edge {
	t.Helper()
	var edges []edge
	for !c.t.After(end) {
		res := check(t, w)
		if res.Outcome != watchers.Unchanged {
			edges = append(edges, edge{At: c.t.Format("01-02 15:04:05.000"), Outcome: res.Outcome, State: res.State.(State).State})
		}
		c.t = c.t.Add(res.After)
	}
	return edges
}

var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func TestEdges(t *testing.T) {
	onAt := func(s string) edge { return edge{At: s, Outcome: watchers.Success, State: "on"} }
	offAt := func(s string) edge { return edge{At: s, Outcome: watchers.Failure, State: "off"} }
	tests := []struct {
		name       string
		props      string
		start, end time.Time
		want       []edge
	}{
		{name: "daily window", props: `{"schedules":["0 12 * * *"],"duration":"1h","timezone":"UTC"}`,
			start: at(10, 0), end: at(38, 0),
			want: []edge{onAt("03-01 12:00:00.000"), offAt("03-01 13:00:00.000"), onAt("03-02 12:00:00.000"), offAt("03-02 13:00:00.000")}},
		{name: "window open at start counts", props: `{"schedules":["0 12 * * *"],"duration":"1h","timezone":"UTC"}`,
			start: at(12, 30).Add(123 * time.Millisecond), end: at(14, 0),
			want: []edge{onAt("03-01 12:30:00.123"), offAt("03-01 13:00:00.000")}},
		{name: "default duration is applied (Choria W21)", props: `{"schedules":["0 12 * * *"],"timezone":"UTC"}`,
			start: at(11, 0), end: at(13, 0),
			want: []edge{onAt("03-01 12:00:00.000"), offAt("03-01 12:01:00.000")}},
		{name: "overlapping windows merge", props: `{"schedules":["0 12 * * *","30 12 * * *"],"duration":"1h","timezone":"UTC"}`,
			start: at(11, 0), end: at(15, 0),
			want: []edge{onAt("03-01 12:00:00.000"), offAt("03-01 13:30:00.000")}},
		{name: "back to back stays on", props: `{"schedules":["0 * * * *"],"duration":"1h","timezone":"UTC"}`,
			start: at(10, 30), end: at(16, 0),
			want: []edge{onAt("03-01 10:30:00.000")}},
		{name: "daily descriptor", props: `{"schedules":["@daily"],"duration":"2h","timezone":"UTC"}`,
			start: at(20, 0), end: at(30, 0),
			want: []edge{onAt("03-02 00:00:00.000"), offAt("03-02 02:00:00.000")}},
		{name: "hourly descriptor", props: `{"schedules":["@hourly"],"duration":"15m","timezone":"UTC"}`,
			start: at(9, 59), end: at(11, 30),
			want: []edge{onAt("03-01 10:00:00.000"), offAt("03-01 10:15:00.000"), onAt("03-01 11:00:00.000"), offAt("03-01 11:15:00.000")}},
		{name: "timezone property", props: `{"schedules":["0 9 * * *"],"duration":"1h","timezone":"Asia/Tokyo"}`,
			start: at(-1, 0), end: at(2, 0),
			want: []edge{onAt("03-01 00:00:00.000"), offAt("03-01 01:00:00.000")}},
		{name: "zone prefix wins", props: `{"schedules":["CRON_TZ=Asia/Tokyo 0 9 * * *"],"duration":"1h","timezone":"UTC"}`,
			start: at(-1, 0), end: at(2, 0),
			want: []edge{onAt("03-01 00:00:00.000"), offAt("03-01 01:00:00.000")}},
		{name: "window far longer than the period", props: `{"schedules":["* * * * *"],"duration":"10000w","timezone":"UTC"}`,
			start: at(10, 0), end: at(12, 0),
			want: []edge{onAt("03-01 10:00:00.000")}},
		{name: "weekdays only", props: `{"schedules":["0 8 * * 1-5"],"duration":"1h","timezone":"UTC"}`, // 2026-03-01 is a Sunday
			start: at(0, 0), end: at(24+9, 0),
			want: []edge{onAt("03-02 08:00:00.000"), offAt("03-02 09:00:00.000")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, c := build(t, tt.props, tt.start)
			if diff := cmp.Diff(tt.want, simulate(t, w, c, tt.end)); diff != "" {
				t.Errorf("edges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLocalTime(t *testing.T) {
	loc := time.FixedZone("test", -5*3600)
	w, c := build(t, `{"schedules":["0 12 * * *"],"duration":"1h"}`, time.Date(2026, 3, 1, 11, 0, 0, 0, loc))
	want := []edge{{At: "03-01 12:00:00.000", Outcome: watchers.Success, State: "on"}, {At: "03-01 13:00:00.000", Outcome: watchers.Failure, State: "off"}}
	if diff := cmp.Diff(want, simulate(t, w, c, time.Date(2026, 3, 1, 14, 0, 0, 0, loc))); diff != "" {
		t.Errorf("edges in the clock's zone (-want +got):\n%s", diff)
	}
}

func TestStartSplay(t *testing.T) {
	const props = `{"schedules":["0 * * * *"],"duration":"20m","start_splay":"10m","timezone":"UTC"}`
	delays := func(identity string) []time.Duration {
		d := watchertest.Deps(t)
		d.Identity = identity
		c := &clock{t: at(9, 30)}
		w := watchertest.BuildWith(t, d, "schedule", props).(*Watcher)
		w.now = c.now
		var got []time.Duration
		for _, e := range simulate(t, w, c, at(14, 0)) {
			at, err := time.Parse("01-02 15:04:05.000", e.At)
			if err != nil {
				t.Fatal(err)
			}
			hour := at.Truncate(time.Hour)
			switch {
			case e.Outcome == watchers.Success:
				got = append(got, at.Sub(hour))
			case at.Sub(hour) != 20*time.Minute:
				t.Errorf("%s: window closed %v after its schedule, want 20m", identity, at.Sub(hour))
			}
		}
		if len(got) != 4 {
			t.Fatalf("%s: %d windows opened, want 4", identity, len(got))
		}
		for _, d := range got {
			if d < 0 || d >= 10*time.Minute {
				t.Errorf("%s: window opened %v after its schedule, want in [0, 10m)", identity, d)
			}
		}
		return got
	}
	a, again, b := delays("a.example.net"), delays("a.example.net"), delays("b.example.net")
	if !cmp.Equal(a, again) {
		t.Errorf("delays for one node differ between runs: %v and %v", a, again)
	}
	if cmp.Equal(a, b) {
		t.Errorf("two nodes got the same delays %v", a)
	}
	if a[0] == a[1] && a[1] == a[2] {
		t.Errorf("every window got the same delay %v", a[0])
	}
}

// TestAfterSkipsNoEdge compares the Runner-style simulation, which jumps by
// Result.After, with checking every second.
func TestAfterSkipsNoEdge(t *testing.T) {
	for i, props := range []string{
		`{"schedules":["*/7 * * * *","*/11 * * * *"],"duration":"3m","timezone":"UTC"}`,
		`{"schedules":["*/5 * * * *"],"duration":"4m","start_splay":"2m","timezone":"UTC"}`,
		`{"schedules":["0,10,12 * * * *"],"duration":"5m","start_splay":"150s","timezone":"UTC"}`,
		// A later fire can open before an earlier one.
		`{"schedules":["0,2 * * * *"],"duration":"10m","start_splay":"5m","timezone":"UTC"}`,
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			end := at(16, 0)
			w, c := build(t, props, at(10, 0))
			jumped := simulate(t, w, c, end)
			w, c = build(t, props, at(10, 0))
			var stepped []edge
			for ; !c.t.After(end); c.t = c.t.Add(time.Second) {
				if res := check(t, w); res.Outcome != watchers.Unchanged {
					stepped = append(stepped, edge{At: c.t.Format("01-02 15:04:05.000"), Outcome: res.Outcome, State: res.State.(State).State})
				}
			}
			// Splayed edges fall between seconds: the stepped run sees
			// them at the next whole second.
			for i := range jumped {
				tm, _ := time.Parse("01-02 15:04:05.000", jumped[i].At)
				if tm.Truncate(time.Second) != tm {
					tm = tm.Truncate(time.Second).Add(time.Second)
				}
				jumped[i].At = tm.Format("01-02 15:04:05.000")
			}
			if len(jumped) < 4 {
				t.Fatalf("only %d edges in six hours: %v", len(jumped), jumped)
			}
			if diff := cmp.Diff(stepped, jumped); diff != "" {
				t.Errorf("edges (-every second +after-driven):\n%s", diff)
			}
		})
	}
}

func TestReenter(t *testing.T) {
	const hourly = `"schedules":["0 * * * *"],"duration":"30m","timezone":"UTC"`
	type step struct {
		at      time.Time
		active  *bool // StateChanged before the check, if set
		outcome watchers.Outcome
		state   string
	}
	yes, no := true, false
	leave := func(tm time.Time) step { return step{at: tm, active: &no} }
	tests := []struct {
		name  string
		props string
		steps []step
	}{
		{name: "re-entering an on period fires again", props: `{` + hourly + `}`, steps: []step{
			{at: at(12, 0), outcome: watchers.Success, state: "on"},
			leave(at(12, 5)),
			{at: at(12, 10), active: &yes, outcome: watchers.Success, state: "on"},
			{at: at(12, 30), outcome: watchers.Failure, state: "off"},
		}},
		{name: "skip_trigger_on_reenter", props: `{` + hourly + `,"skip_trigger_on_reenter":true}`, steps: []step{
			{at: at(12, 0), outcome: watchers.Success, state: "on"},
			leave(at(12, 5)),
			{at: at(12, 10), active: &yes, outcome: watchers.Unchanged, state: "on"},
			{at: at(12, 20), outcome: watchers.Unchanged, state: "on"},
			{at: at(12, 30), outcome: watchers.Failure, state: "off"},
			{at: at(13, 0), outcome: watchers.Success, state: "on"},
		}},
		{name: "skip only within the same on period", props: `{` + hourly + `,"skip_trigger_on_reenter":true}`, steps: []step{
			{at: at(12, 0), outcome: watchers.Success, state: "on"},
			leave(at(12, 5)),
			{at: at(13, 10), active: &yes, outcome: watchers.Success, state: "on"},
		}},
		{name: "skip across merged windows", props: `{"schedules":["0 12 * * *","20 12 * * *"],"duration":"30m","timezone":"UTC","skip_trigger_on_reenter":true}`, steps: []step{
			{at: at(12, 0), outcome: watchers.Success, state: "on"},
			leave(at(12, 5)),
			{at: at(12, 40), active: &yes, outcome: watchers.Unchanged, state: "on"},
			{at: at(12, 50), outcome: watchers.Failure, state: "off"},
		}},
		{name: "re-entering while off fails again", props: `{` + hourly + `}`, steps: []step{
			{at: at(12, 40), outcome: watchers.Unchanged, state: "off"},
			leave(at(12, 45)),
			{at: at(12, 50), active: &yes, outcome: watchers.Failure, state: "off"},
			{at: at(12, 55), outcome: watchers.Unchanged, state: "off"},
		}},
		{name: "transitions within the states change nothing", props: `{` + hourly + `}`, steps: []step{
			{at: at(12, 0), outcome: watchers.Success, state: "on"},
			{at: at(12, 1), active: &yes, outcome: watchers.Unchanged, state: "on"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, c := build(t, tt.props, day)
			for i, s := range tt.steps {
				c.t = s.at
				if s.active != nil {
					w.StateChanged(*s.active)
					if !*s.active {
						continue // the Runner does not check outside the states
					}
				}
				res := check(t, w)
				if res.Outcome != s.outcome || res.State.(State).State != s.state {
					t.Fatalf("step %d at %v: Check() = %v %v, want %v %v", i, s.at.Format("15:04"), res.Outcome, res.State, s.outcome, s.state)
				}
			}
		})
	}
}

// FuzzDecodeProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: it must never panic, and a config it accepts
// must evaluate.
func FuzzDecodeProperties(f *testing.F) {
	for _, tt := range validateTests {
		f.Add([]byte(tt.props))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := watchers.Build("schedule", b)
		if err != nil {
			return
		}
		sw := w.(*Watcher)
		if len(sw.specs) == 0 || sw.duration < time.Second || sw.splay > sw.duration/2 {
			t.Fatalf("Build(%q) accepted %d schedules, duration %v, splay %v", b, len(sw.specs), sw.duration, sw.splay)
		}
		if _, next := sw.evaluate(day); !next.After(day) {
			t.Fatalf("Build(%q): next check %v is not after %v", b, next, day)
		}
	})
}
