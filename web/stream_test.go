package web

import (
	"testing"
	"time"

	"github.com/mms-io/mms/fleet"
)

var eventQueryTests = []struct {
	name, raw string
	want      eventQuery
	err       string
}{
	{name: "empty", raw: ""},
	{name: "filters", raw: "identity=web1&machine=app&type=exec", want: eventQuery{filter: fleet.EventFilter{Identity: "^web1$", Machine: "app", Type: "exec"}}},
	{name: "an identity is one node's", raw: "identity=web1.example.com", want: eventQuery{filter: fleet.EventFilter{Identity: `^web1\.example\.com$`}}},
	{name: "since", raw: "since=15m&type=transition", want: eventQuery{filter: fleet.EventFilter{Type: "transition"}, since: 15 * time.Minute}},
	{name: "escaped identity", raw: "identity=a%2Fb%20c", want: eventQuery{filter: fleet.EventFilter{Identity: "^a/b c$"}}},
	{name: "the most", raw: "since=168h", want: eventQuery{since: maxSince}},
	{name: "not a duration", raw: "since=yesterday", err: `since "yesterday": not a duration such as 90s, 15m or 2h`},
	{name: "negative", raw: "since=-1s", err: `since "-1s": must not be negative`},
	{name: "too long", raw: "since=169h", err: `since "169h": at most 168h0m0s`},
	{name: "bad escape", raw: "machine=%g", err: `invalid URL escape "%g"`},
}

func TestParseEventQuery(t *testing.T) {
	for _, tt := range eventQueryTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEventQuery(tt.raw)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("parseEventQuery(%q) err = %v, want %q", tt.raw, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseEventQuery(%q) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
			}
		})
	}
}

// FuzzParseEventQuery: any query parses or is refused, never panics, and
// what parses asks for no more history than maxSince.
func FuzzParseEventQuery(f *testing.F) {
	for _, tt := range eventQueryTests {
		f.Add(tt.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseEventQuery(raw)
		if err == nil && (q.since < 0 || q.since > maxSince) {
			t.Errorf("parseEventQuery(%q) since = %v, out of [0, %v]", raw, q.since, maxSince)
		}
	})
}
