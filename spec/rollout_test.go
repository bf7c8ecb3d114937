package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseWaves(t *testing.T) {
	tests := []struct {
		waves []string
		want  []Wave
		err   string
	}{
		{waves: []string{"100%"}, want: []Wave{{Percent: 100}}},
		{waves: []string{"1", "10%", "50%", "100%"}, want: []Wave{{Count: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}}},
		{waves: []string{"1", "5", "100%"}, want: []Wave{{Count: 1}, {Count: 5}, {Percent: 100}}},
		{waves: nil, err: "at least one wave is required"},
		{waves: []string{"10%", "50%"}, err: `the last wave is "50%": it must be "100%"`},
		{waves: []string{"50%", "10%", "100%"}, err: `wave 2: "10%": waves are cumulative and must increase (after "50%")`},
		{waves: []string{"5", "2", "100%"}, err: `wave 2: "2": waves are cumulative and must increase`},
		{waves: []string{"10%", "5", "100%"}, err: `wave 2: "5": node counts come before shares`},
		{waves: []string{"0", "100%"}, err: `wave 1: "0": want a node count (1 or more)`},
		{waves: []string{"101%"}, err: `wave 1: "101%": want a share from 1% to 100%`},
		{waves: []string{"ten", "100%"}, err: `wave 1: "ten"`},
		{waves: strings.Split(strings.Repeat("1,", 21)+"100%", ","), err: "22 waves, at most 20"},
	}
	for _, tt := range tests {
		got, err := ParseWaves(tt.waves)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseWaves(%q) = %v, %v; want error %q", tt.waves, got, err, tt.err)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("ParseWaves(%q) = %v, %v; want %v", tt.waves, got, err, tt.want)
		}
	}
}

func TestWaveSize(t *testing.T) {
	for _, tt := range []struct {
		w       Wave
		n, want int
	}{
		{Wave{Count: 1}, 10, 1}, {Wave{Count: 5}, 3, 3}, {Wave{Percent: 10}, 10, 1}, {Wave{Percent: 10}, 11, 2},
		{Wave{Percent: 50}, 1, 1}, {Wave{Percent: 100}, 7, 7}, {Wave{Percent: 1}, 0, 0},
	} {
		if got := tt.w.Size(tt.n); got != tt.want {
			t.Errorf("%+v.Size(%d) = %d, want %d", tt.w, tt.n, got, tt.want)
		}
	}
}

func TestHealthAndRolloutOnTheWire(t *testing.T) {
	const entry = `{"name":"web","source":"https://h/w.tgz","checksum":"` + sumArchive + `","verify_checksum":"` + sumSums + `",` +
		`"health":{"states":["RUNNING"],"within":"1m0s","fail_states":["FAILED"]},"rollout":{"waves":["1","10%","100%"],"pause":"30s"}}`
	s, err := DecodeV2([]byte(`{"serial":1,"issued_at":"2026-12-01T00:00:00Z","machines":[` + entry + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := s.Machines[0]
	wantHealth := &Health{States: []string{"RUNNING"}, Within: Duration(time.Minute), FailStates: []string{"FAILED"}}
	wantRollout := &Rollout{Waves: []string{"1", "10%", "100%"}, Pause: Duration(30 * time.Second)}
	if !cmp.Equal(m.Health, wantHealth) || !cmp.Equal(m.Rollout, wantRollout) {
		t.Fatalf("decoded health %+v rollout %+v, want %+v %+v", m.Health, m.Rollout, wantHealth, wantRollout)
	}
	if err := s.Validate(ValidateOptions{}); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	out, err := EncodeV2(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"health":{"states":["RUNNING"],"within":"1m0s","fail_states":["FAILED"]},"rollout":{"waves":["1","10%","100%"],"pause":"30s"}`) {
		t.Errorf("EncodeV2() = %s, want health and rollout as decoded", out)
	}
	yaml := "- name: web\n  source: https://h/w.tgz\n  checksum: " + sumArchive + "\n  verify_checksum: " + sumSums +
		"\n  health:\n    states: [RUNNING]\n    within: 1m\n    fail_states: [FAILED]\n  rollout:\n    waves: ['1', 10%, 100%]\n    pause: 30s\n"
	ms, err := ParseMachines([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseMachines(yaml) = %v", err)
	}
	if !cmp.Equal(ms[0].Health, wantHealth) || !cmp.Equal(ms[0].Rollout, wantRollout) {
		t.Errorf("YAML health %+v rollout %+v, want %+v %+v", ms[0].Health, ms[0].Rollout, wantHealth, wantRollout)
	}
}

func TestHealthAndRolloutValidation(t *testing.T) {
	health := func() *Health { return &Health{States: []string{"RUNNING"}, Within: Duration(time.Minute)} }
	tests := []struct {
		name string
		edit func(m *Machine)
		opts ValidateOptions
		err  string
	}{
		{name: "valid", edit: func(m *Machine) { m.Health, m.Rollout = health(), &Rollout{Waves: []string{"100%"}} }},
		{name: "no healthy states", edit: func(m *Machine) { m.Health = &Health{Within: Duration(time.Minute)} }, err: "health: states: at least one healthy state is required"},
		{name: "within too short", edit: func(m *Machine) { m.Health = health(); m.Health.Within = Duration(500 * time.Millisecond) }, err: "health: within: 500ms is below the minimum of 1s"},
		{name: "state both healthy and failed", edit: func(m *Machine) { m.Health = health(); m.Health.FailStates = []string{"RUNNING"} }, err: `health: fail_states: "RUNNING" is also a healthy state`},
		{name: "rollout without health", edit: func(m *Machine) { m.Rollout = &Rollout{Waves: []string{"100%"}} }, err: "rollout: needs a health gate"},
		{name: "rollout without 100%", edit: func(m *Machine) { m.Health, m.Rollout = health(), &Rollout{Waves: []string{"1", "50%"}} }, err: `rollout: waves: the last wave is "50%"`},
		{name: "bad stale policy", edit: func(m *Machine) { m.Health, m.Rollout = health(), &Rollout{Waves: []string{"100%"}, Stale: "wait"} }, err: `rollout: stale: "wait": want "halt" or "skip"`},
		{name: "not in v1", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) { m.Health = health() }, err: "health: not supported in v1"},
		{name: "failure budget", edit: func(m *Machine) {
			m.Health, m.Rollout = health(), &Rollout{Waves: []string{"100%"}, MaxFailed: Budget{N: 10, Share: true}, MinDone: 20, Paused: true}
		}},
		{name: "budget out of range", edit: func(m *Machine) {
			m.Health, m.Rollout = health(), &Rollout{Waves: []string{"100%"}, MaxFailed: Budget{N: 120, Share: true}}
		},
			err: `rollout: max_failed: "120%": want a node count (0 or more) or a share from 0% to 100%`},
		{name: "min_done with a count", edit: func(m *Machine) {
			m.Health, m.Rollout = health(), &Rollout{Waves: []string{"100%"}, MaxFailed: Budget{N: 1}, MinDone: 3}
		},
			err: `rollout: min_done: only with a share in max_failed`},
		{name: "negative min_done", edit: func(m *Machine) {
			m.Health, m.Rollout = health(), &Rollout{Waves: []string{"100%"}, MaxFailed: Budget{N: 1, Share: true}, MinDone: -1}
		}, err: `rollout: min_done: -1 must not be negative`},
		{name: "hold", edit: func(m *Machine) { m.Hold = "identity('^web3$') || has_file('/etc/hold')" }},
		{name: "hold that does not compile", edit: func(m *Machine) { m.Hold = "identity(" }, err: `hold: `},
		{name: "blank hold", edit: func(m *Machine) { m.Hold = "  " }, err: `hold: an empty expression would hold every node`},
		{name: "hold not in v1", opts: ValidateOptions{Legacy: true}, edit: func(m *Machine) { m.Hold = "true" }, err: "hold: not supported in v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := goodMachine()
			tt.edit(&m)
			err := m.Validate(tt.opts)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("Validate() = %v, want %q", err, tt.err)
			}
		})
	}
	var m Machine
	if err := m.UnmarshalJSON([]byte(`{"name":"web","health":{"states":["A"],"withn":"1s"}}`)); err == nil || !strings.Contains(err.Error(), `health: unknown field "withn"`) {
		t.Errorf("health typo: %v, want unknown field", err)
	}
}

func TestBudgetAllowed(t *testing.T) {
	for _, tt := range []struct {
		b             Budget
		done, minDone int
		want          int
		judged        bool
	}{
		{Budget{}, 5, 0, 0, true},
		{Budget{N: 2}, 0, 0, 2, true},
		{Budget{N: 10, Share: true}, 9, 0, 0, true},
		{Budget{N: 10, Share: true}, 10, 0, 1, true},
		{Budget{N: 25, Share: true}, 7, 0, 1, true},
		{Budget{N: 10, Share: true}, 4, 5, 0, false},
		{Budget{N: 50, Share: true}, 5, 5, 2, true},
	} {
		got, judged := tt.b.Allowed(tt.done, tt.minDone)
		if got != tt.want || judged != tt.judged {
			t.Errorf("%v.Allowed(%d, %d) = %d, %t; want %d, %t", tt.b, tt.done, tt.minDone, got, judged, tt.want, tt.judged)
		}
	}
}
