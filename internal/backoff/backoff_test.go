package backoff

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		n      int
		want   time.Duration
	}{
		{"first", Policy{time.Second, time.Minute}, 1, time.Second},
		{"zero counts as first", Policy{time.Second, time.Minute}, 0, time.Second},
		{"negative counts as first", Policy{time.Second, time.Minute}, -3, time.Second},
		{"second doubles", Policy{time.Second, time.Minute}, 2, 2 * time.Second},
		{"fifth", Policy{time.Second, time.Minute}, 5, 16 * time.Second},
		{"capped", Policy{time.Second, time.Minute}, 7, time.Minute},
		{"stays capped", Policy{time.Second, time.Minute}, 1000, time.Minute},
		{"huge attempt never overflows", Policy{time.Second, time.Duration(math.MaxInt64)}, math.MaxInt, time.Duration(math.MaxInt64)},
		{"cap between doublings", Policy{25 * time.Millisecond, 5 * time.Second}, 9, 5 * time.Second},
		{"just under the cap", Policy{25 * time.Millisecond, 5 * time.Second}, 8, 3200 * time.Millisecond},
		{"first above max is capped", Policy{time.Minute, time.Second}, 1, time.Second},
		{"zero first stays zero", Policy{0, time.Second}, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Delay(tt.n); got != tt.want {
				t.Errorf("%+v.Delay(%d) = %v, want %v", tt.policy, tt.n, got, tt.want)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	tests := []struct {
		d        time.Duration
		min, max time.Duration
	}{
		{0, 0, 0},
		{-time.Second, -time.Second, -time.Second},
		{1, 0, 1},
		{3, 1, 3},
		{time.Second, 500 * time.Millisecond, time.Second},
		{time.Duration(math.MaxInt64), time.Duration(math.MaxInt64) / 2, time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for range 1000 {
			got := Jitter(tt.d)
			if got < tt.min || got > tt.max {
				t.Fatalf("Jitter(%v) = %v, want within [%v, %v]", tt.d, got, tt.min, tt.max)
			}
			seen[got] = true
		}
		// Both ends of a small range come up: the bounds are inclusive.
		if tt.max-tt.min == 2 && (!seen[tt.min] || !seen[tt.max]) {
			t.Errorf("Jitter(%v) over 1000 draws gave %v, want both %v and %v", tt.d, seen, tt.min, tt.max)
		}
	}
}

func TestJittered(t *testing.T) {
	p := Policy{First: time.Second, Max: 10 * time.Second}
	for n, want := range map[int]time.Duration{1: time.Second, 3: 4 * time.Second, 9: 10 * time.Second} {
		for range 100 {
			if got := p.Jittered(n); got < want/2 || got > want {
				t.Fatalf("Jittered(%d) = %v, want within [%v, %v]", n, got, want/2, want)
			}
		}
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Millisecond) {
		t.Error("Sleep(1ms) with a live context = false, want true")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep(1h) with a done context = true, want false")
	}
}
