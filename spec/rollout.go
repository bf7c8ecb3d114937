package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Health is an entry's health gate (v2): how a node tells that the version
// it just started works. A new version is healthy once its machine enters
// one of States within Within of starting; entering one of FailStates, or
// not getting to States in time, makes it unhealthy, and an upgrade is then
// rolled back on that node. Without a Health, a version is healthy once it
// loads.
type Health struct {
	// States are the machine states that mean healthy. Required.
	States []string `json:"states"`
	// Within is how long after it starts the machine has to get there;
	// at least a second.
	Within Duration `json:"within"`
	// FailStates are states that mean unhealthy at once (optional).
	FailStates []string `json:"fail_states,omitempty"`
}

// Rollout is an entry's rollout policy (v2): the matching nodes upgrade in
// cumulative waves, each after every node of the earlier waves reports the
// new version healthy (see Health, which a rollout needs) and Pause has
// passed. Every node ranks the nodes that report status the same way, so
// all agree on the waves without a control server.
type Rollout struct {
	// Waves are cumulative sizes: a node count ("1", "5") or a share of
	// the matching nodes ("10%"). Counts come first and increase, then
	// shares, which increase to a last "100%".
	Waves []string `json:"waves"`
	// Pause is the wait after a wave is healthy before the next starts.
	Pause Duration `json:"pause,omitzero"`
	// Stale says what a node of an earlier wave that stopped reporting
	// means: "halt" (the default: it counts as not healthy, so the rollout
	// waits for it or an operator) or "skip" (it is left out of the ranking
	// and the waves).
	Stale string `json:"stale,omitempty"`
	// MaxFailed is the failure budget: how many nodes may fail with the
	// new version (each rolls back on its own) before the rollout halts,
	// a count (1) or a share of the nodes done with it ("10%"). Zero, the
	// default, halts at the first failure.
	MaxFailed Budget `json:"max_failed,omitzero"`
	// MinDone is how many nodes must be done with the new version
	// (healthy or failed) before a share in MaxFailed is judged; until
	// then failures do not halt the rollout. Only with a share.
	MinDone int `json:"min_done,omitempty"`
	// Paused stops the rollout from starting any node that does not run
	// the new version yet; nodes under way finish (`mms rollout pause`).
	Paused bool `json:"paused,omitempty"`
}

// Budget is a number of nodes, written 2, or a share of nodes, written
// "10%". The zero value is the count 0.
type Budget struct {
	// N is the count, or the percent when Share is set.
	N int
	// Share is set for a share ("10%").
	Share bool
}

// String writes b as the spec does: "2" or "10%".
func (b Budget) String() string {
	if b.Share {
		return strconv.Itoa(b.N) + "%"
	}
	return strconv.Itoa(b.N)
}

// Allowed returns how many failures b allows once done nodes are done
// with a version (healthy or failed), and false while a share is not
// judged yet (fewer than minDone nodes are done).
func (b Budget) Allowed(done, minDone int) (int, bool) {
	if !b.Share {
		return b.N, true
	}
	if done < minDone {
		return 0, false
	}
	return b.N * done / 100, true
}

// MarshalJSON writes a count as a number and a share as a string.
func (b Budget) MarshalJSON() ([]byte, error) {
	if b.Share {
		return json.Marshal(b.String())
	}
	return json.Marshal(b.N)
}

// UnmarshalJSON reads a count (a whole number, 0 or more) or a share (a
// string from "0%" to "100%").
func (b *Budget) UnmarshalJSON(data []byte) error {
	const want = "want a node count such as 1 or a share such as \"10%%\", got %s"
	var n int
	if err := json.Unmarshal(data, &n); err == nil && string(data) != "null" {
		if n < 0 {
			return fmt.Errorf(want, describeJSON(data))
		}
		*b = Budget{N: n}
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil || string(data) == "null" {
		return fmt.Errorf(want, describeJSON(data))
	}
	p, ok := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(p)
	if !ok || err != nil || n < 0 || n > 100 || p != strconv.Itoa(n) {
		return fmt.Errorf(want, describeJSON(data))
	}
	*b = Budget{N: n, Share: true}
	return nil
}

// The values of Rollout.Stale.
const (
	StaleHalt = "halt"
	StaleSkip = "skip"
)

// Bounds of a health gate and a rollout.
const (
	MinHealthWithin = time.Second
	MaxHealthWithin = 24 * time.Hour
	MaxRolloutPause = 24 * time.Hour
	MaxWaves        = 20
)

// Duration is a time.Duration written as a Go duration string ("60s").
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "90s" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"60s\", got %s", describeJSON(b))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"60s\", got %s", quote(s))
	}
	*d = Duration(v)
	return nil
}

// Wave is one parsed wave of a rollout: a node count, or a share (percent)
// of the matching nodes. Exactly one is set.
type Wave struct {
	Count   int
	Percent int
}

// ParseWaves parses and checks Rollout.Waves.
func ParseWaves(waves []string) ([]Wave, error) {
	if len(waves) == 0 {
		return nil, errors.New("at least one wave is required (the last one \"100%\")")
	}
	if len(waves) > MaxWaves {
		return nil, fmt.Errorf("%d waves, at most %d", len(waves), MaxWaves)
	}
	out := make([]Wave, 0, len(waves))
	for i, s := range waves {
		var w Wave
		if p, ok := strings.CutSuffix(s, "%"); ok {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 100 {
				return nil, fmt.Errorf("wave %d: %s: want a share from 1%% to 100%%", i+1, quote(s))
			}
			w.Percent = n
		} else {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("wave %d: %s: want a node count (1 or more) or a share such as \"10%%\"", i+1, quote(s))
			}
			w.Count = n
		}
		if i > 0 {
			prev := out[i-1]
			switch {
			case w.Count > 0 && prev.Percent > 0:
				return nil, fmt.Errorf("wave %d: %s: node counts come before shares (after %s a count may be smaller than the share)", i+1, quote(s), quote(waves[i-1]))
			case w.Count > 0 && w.Count <= prev.Count, w.Percent > 0 && w.Percent <= prev.Percent:
				return nil, fmt.Errorf("wave %d: %s: waves are cumulative and must increase (after %s)", i+1, quote(s), quote(waves[i-1]))
			}
		}
		out = append(out, w)
	}
	if last := out[len(out)-1]; last.Percent != 100 {
		return nil, fmt.Errorf("the last wave is %s: it must be \"100%%\" so every matching node gets the version", quote(waves[len(waves)-1]))
	}
	return out, nil
}

// Size returns how many of n nodes the waves up to and including w hold:
// the count (at most n), or the share rounded up.
func (w Wave) Size(n int) int {
	if w.Count > 0 {
		return min(w.Count, n)
	}
	return int(math.Ceil(float64(w.Percent) * float64(n) / 100))
}

// check returns the problems of a health gate.
func (h *Health) check() error {
	var errs []error
	if len(h.States) == 0 {
		errs = append(errs, errors.New("states: at least one healthy state is required"))
	}
	for _, list := range []struct {
		name   string
		states []string
	}{{"states", h.States}, {"fail_states", h.FailStates}} {
		for _, s := range list.states {
			if strings.TrimSpace(s) == "" {
				errs = append(errs, fmt.Errorf("%s: an empty state name", list.name))
			}
		}
	}
	for _, s := range h.FailStates {
		if slices.Contains(h.States, s) {
			errs = append(errs, fmt.Errorf("fail_states: %s is also a healthy state", quote(s)))
		}
	}
	switch w := h.Within.Std(); {
	case w < MinHealthWithin:
		errs = append(errs, fmt.Errorf("within: %v is below the minimum of %v", w, MinHealthWithin))
	case w > MaxHealthWithin:
		errs = append(errs, fmt.Errorf("within: %v is above the maximum of %v", w, MaxHealthWithin))
	}
	return errors.Join(errs...)
}

// check returns the problems of a rollout policy.
func (r *Rollout) check() error {
	var errs []error
	if _, err := ParseWaves(r.Waves); err != nil {
		errs = append(errs, fmt.Errorf("waves: %w", err))
	}
	if p := r.Pause.Std(); p < 0 || p > MaxRolloutPause {
		errs = append(errs, fmt.Errorf("pause: %v must be between 0 and %v", p, MaxRolloutPause))
	}
	switch r.Stale {
	case "", StaleHalt, StaleSkip:
	default:
		errs = append(errs, fmt.Errorf("stale: %s: want %q or %q", quote(r.Stale), StaleHalt, StaleSkip))
	}
	switch b := r.MaxFailed; {
	case b.N < 0, b.Share && b.N > 100:
		errs = append(errs, fmt.Errorf("max_failed: %s: want a node count (0 or more) or a share from 0%% to 100%%", quote(b.String())))
	}
	switch {
	case r.MinDone < 0:
		errs = append(errs, fmt.Errorf("min_done: %d must not be negative", r.MinDone))
	case r.MinDone > 0 && !r.MaxFailed.Share:
		errs = append(errs, errors.New("min_done: only with a share in max_failed (such as \"10%\"): a count is judged from the first failure"))
	}
	return errors.Join(errs...)
}

// decodeObject strictly decodes a JSON object into v (a *Health or a
// *Rollout): unknown fields and trailing data are errors.
func decodeObject(v any, val json.RawMessage) error {
	if len(val) == 0 || val[0] != '{' {
		return fmt.Errorf("want an object, got %s", describeJSON(val))
	}
	dec := json.NewDecoder(bytes.NewReader(val))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
