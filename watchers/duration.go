package watchers

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that decodes from a string such as "30s",
// "1h30m", "2d" or "1w" (Go duration syntax plus d and w units), or from a
// JSON number of seconds. It encodes as a Go duration string.
type Duration time.Duration

// ParseDuration parses s as described on [Duration]. Negative durations are
// an error.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		d, ok := scale(n, time.Second)
		if !ok {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		return d, nil
	}
	var total time.Duration
	rest := s
	// Peel off leading d/w components, which time.ParseDuration lacks.
	for {
		i := strings.IndexAny(rest, "dw")
		if i <= 0 {
			break
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			break
		}
		if n < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		d, ok := scale(n, unit)
		if !ok || total > math.MaxInt64-time.Duration(d) {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total += time.Duration(d)
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 30s, 5m, 1h30m, 2d", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total += d
	}
	return Duration(total), nil
}

// scale returns n (not negative) units as a Duration, and false when that
// does not fit or n is not a number (converting an out-of-range float to an
// integer is not defined in Go: 1e30 seconds came out negative).
func scale(n float64, unit time.Duration) (Duration, bool) {
	v := n * float64(unit)
	if !(v < math.MaxInt64) { // also false for NaN
		return 0, false
	}
	return Duration(v), true
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as a Go duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalText accepts a duration string; it lets YAML decoders and flags
// use Duration too.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
