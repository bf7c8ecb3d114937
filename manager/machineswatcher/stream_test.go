package machineswatcher

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// parseNudgeCases is the table for ParseNudge; FuzzParseNudge is seeded
// from it.
func parseNudgeCases() []struct {
	name, in, wantErr string
	matches           []string // identities the nudge is for
	misses            []string
} {
	return []struct {
		name, in, wantErr string
		matches           []string
		misses            []string
	}{
		{name: "empty is everyone", in: "", matches: []string{"web1", ""}},
		{name: "empty object is everyone", in: "{}", matches: []string{"db1"}},
		{name: "identity", in: `{"identity":"^web"}`, matches: []string{"web1"}, misses: []string{"db1"}},
		{name: "unknown field", in: `{"identity":"x","serial":5}`, wantErr: `nudge: json: unknown field "serial"`},
		{name: "trailing data", in: `{} {}`, wantErr: "nudge: data after the JSON object"},
		{name: "not JSON", in: `web`, wantErr: "nudge: invalid character"},
		{name: "bad pattern", in: `{"identity":"("}`, wantErr: "nudge: identity: error parsing regexp: missing closing )"},
		{name: "too large", in: `{"identity":"` + strings.Repeat("a", MaxNudgeSize) + `"}`, wantErr: "over the 4096 limit"},
	}
}

func TestParseNudge(t *testing.T) {
	for _, tt := range parseNudgeCases() {
		t.Run(tt.name, func(t *testing.T) {
			re, err := ParseNudge([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseNudge(%q) = %v, want error %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range tt.matches {
				if re != nil && !re.MatchString(id) {
					t.Errorf("nudge %q is not for %q", tt.in, id)
				}
			}
			for _, id := range tt.misses {
				if re == nil || re.MatchString(id) {
					t.Errorf("nudge %q is for %q", tt.in, id)
				}
			}
		})
	}
}

func FuzzParseNudge(f *testing.F) {
	for _, tt := range parseNudgeCases() {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		re, err := ParseNudge(data)
		if err != nil && re != nil {
			t.Fatalf("ParseNudge() = %v with error %v", re, err)
		}
		if err == nil && len(data) > MaxNudgeSize {
			t.Fatalf("ParseNudge() accepted %d bytes", len(data))
		}
	})
}

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
