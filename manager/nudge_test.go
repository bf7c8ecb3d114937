package manager

import (
	"strings"
	"testing"
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
