package main

import (
	"strings"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
)

// TestVerboseConnectionLogs checks that operator commands keep their
// stderr for what matters: the connection's connect and close records
// show only with --verbose.
func TestVerboseConnectionLogs(t *testing.T) {
	url := natstest.RunJetStream(t).ClientURL()
	tests := []struct {
		name string
		args []string
		want bool
	}{
		{name: "quiet by default", args: []string{"status", "--server", url, "--create"}, want: false},
		{name: "--verbose", args: []string{"status", "--server", url, "--create", "--verbose"}, want: true},
		{name: "-v before the command", args: []string{"-v", "status", "--server", url, "--create"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mmsOK(t, "", tt.args...)
			for _, msg := range []string{`msg="nats connected"`, `msg="nats connection closed"`} {
				if got := strings.Contains(r.stderr, msg); got != tt.want {
					t.Errorf("mms %s: stderr has %s = %v, want %v; stderr:\n%s", strings.Join(tt.args, " "), msg, got, tt.want, r.stderr)
				}
			}
		})
	}
}
