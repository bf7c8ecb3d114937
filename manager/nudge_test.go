package manager

import (
	"errors"
	"strings"
	"testing"
	"time"
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

func TestCheckNudgeMessage(t *testing.T) {
	tests := []struct {
		name   string
		reply  string
		header map[string][]string
		ok     bool
	}{
		{"mms reconcile", "_INBOX.abc.1", nil, true},
		{"a nudge without reply", "", nil, true},
		{"a consumer's delivery", "$JS.ACK.KV_MACHINES_STATUS.evil.1.2.3.1733300000000000000.0", nil, false},
		{"a consumer's flow control", "$JS.FC.KV_MACHINES_STATUS.evil.1", map[string][]string{"Status": {"100"}}, false},
		{"an idle heartbeat", "", map[string][]string{"Status": {"100"}, "Description": {"Idle Heartbeat"}}, false},
		{"a delivered delete marker", "", map[string][]string{"KV-Operation": {"DEL"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckNudgeMessage(tt.reply, tt.header)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNotNudge)) {
				t.Errorf("CheckNudgeMessage(%q, %v) = %v, want ok %v", tt.reply, tt.header, err, tt.ok)
			}
		})
	}
}

// TestIgnoredNudges: a flood of bad nudges is one line at once, then one
// summary per NudgeLogInterval with the count.
func TestIgnoredNudges(t *testing.T) {
	var n IgnoredNudges
	now := time.Unix(1000, 0)
	why := errors.New("bad")
	if !n.Ignore(now, why) {
		t.Fatal("the first ignored nudge is not logged")
	}
	for i := range 2999 {
		if n.Ignore(now.Add(time.Duration(i)*time.Millisecond), why) {
			t.Fatalf("ignored nudge %d of a flood is logged", i+2)
		}
	}
	if c, _ := n.Summary(now.Add(NudgeLogInterval / 2)); c != 0 {
		t.Errorf("a summary within the interval: %d, want none yet", c)
	}
	if c, last := n.Summary(now.Add(NudgeLogInterval)); c != 2999 || last != why {
		t.Errorf("summary = %d, %v; want 2999, %v", c, last, why)
	}
	if c, _ := n.Summary(now.Add(3 * NudgeLogInterval)); c != 0 {
		t.Errorf("a second summary without new nudges: %d", c)
	}
	if !n.Ignore(now.Add(3*NudgeLogInterval), why) {
		t.Error("the first ignored nudge after a quiet interval is not logged")
	}
}
