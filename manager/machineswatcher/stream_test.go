package machineswatcher

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestChecksSupersede: a running check is cancelled by a newer spec in the
// data item (a higher serial, another v1 spec), never by the same value,
// an older or equal serial, or garbage.
func TestChecksSupersede(t *testing.T) {
	_, priv, err := packer.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(f packer.Format, serial uint64, name string) any {
		s := &spec.Spec{Machines: []spec.Machine{{Name: name, Source: "https://x/" + name}}}
		if f == packer.FormatV2 {
			s.Serial, s.IssuedAt = serial, time.Now()
		}
		env, err := packer.Seal(f, s, []ed25519.PrivateKey{priv}...)
		if err != nil {
			t.Fatal(err)
		}
		return string(env)
	}
	cur := seal(packer.FormatV2, 10, "a")
	tests := []struct {
		name  string
		start any
		next  any
		want  bool
	}{
		{name: "same value", start: cur, next: cur, want: false},
		{name: "higher serial", start: cur, next: seal(packer.FormatV2, 11, "b"), want: true},
		{name: "lower serial (a replay)", start: cur, next: seal(packer.FormatV2, 9, "b"), want: false},
		{name: "equal serial (equivocation)", start: cur, next: seal(packer.FormatV2, 10, "b"), want: false},
		{name: "garbage", start: cur, next: "not a spec", want: false},
		{name: "another v1 spec", start: seal(packer.FormatV1, 0, "a"), next: seal(packer.FormatV1, 0, "b"), want: true},
		{name: "v1 after v2", start: cur, next: seal(packer.FormatV1, 0, "b"), want: false},
		{name: "v2 after v1", start: seal(packer.FormatV1, 0, "a"), next: cur, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c checks
			ctx, done := c.start(t.Context(), tt.start)
			defer done()
			if got := c.supersede(tt.next); got != tt.want {
				t.Fatalf("supersede() = %v, want %v", got, tt.want)
			}
			if cancelled := errors.Is(context.Cause(ctx), errSuperseded); cancelled != tt.want {
				t.Errorf("check cancelled = %v, want %v", cancelled, tt.want)
			}
		})
	}
	var idle checks
	if idle.supersede(cur) {
		t.Errorf("supersede() with no check running = true")
	}
}

func TestRetryDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{1: RetryFirst, 2: 2 * RetryFirst, 3: 4 * RetryFirst, 20: RetryMax, 1000: RetryMax} {
		for range 50 {
			if d := retryDelay(n); d < want/2 || d > want {
				t.Fatalf("retryDelay(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

// TestNudgeRateLimit: a flood of nudges triggers at most one check per
// manager.NudgeMinInterval.
func TestNudgeRateLimit(t *testing.T) {
	var c checks
	now := time.Unix(1000, 0)
	if !c.nudged(now) {
		t.Fatal("first nudge refused")
	}
	if c.nudged(now.Add(manager.NudgeMinInterval / 2)) {
		t.Error("a second nudge within the interval triggered a check")
	}
	if !c.nudged(now.Add(manager.NudgeMinInterval)) {
		t.Error("a nudge after the interval was refused")
	}
}
