package watchers

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "", want: 0},
		{in: "30s", want: 30 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "2d", want: 48 * time.Hour},
		{in: "1w1d12h", want: 8*24*time.Hour + 12*time.Hour},
		{in: "1.5", want: 1500 * time.Millisecond},
		{in: "9223372036", want: 9223372036 * time.Second},
		{in: "-5s", err: `invalid duration "-5s": negative`},
		{in: "-1", err: `invalid duration "-1": negative`},
		{in: "-1d2d", err: `invalid duration "-1d2d": negative`},
		{in: "1d-5h", err: `invalid duration "1d-5h": negative`},
		{in: "soon", err: `invalid duration "soon": want e.g. 30s, 5m, 1h30m, 2d`},
		{in: "1e30", err: `invalid duration "1e30": too long`},
		{in: "9223372037", err: `invalid duration "9223372037": too long`},
		{in: "Inf", err: `invalid duration "Inf": too long`},
		{in: "NaN", err: `invalid duration "NaN": too long`},
		{in: "99999999999999d", err: `invalid duration "99999999999999d": too long`},
		{in: "99999999999999d99999999999999d", err: `invalid duration "99999999999999d99999999999999d": too long`},
		{in: "16000w", err: `invalid duration "16000w": too long`},
		{in: "106751d2562047h", err: `invalid duration "106751d2562047h": too long`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got.Std() != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDurationJSONNumberOverflow(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte("1e30"), &d); err == nil {
		t.Errorf("Unmarshal(1e30) = %v, want an error (it used to wrap to %v)", d, time.Duration(math.MinInt64))
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30s", "1.5", "2d", "1w1d12h", "-1d2d", "1e30", "99999999999999d99999999999999d", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
	})
}
