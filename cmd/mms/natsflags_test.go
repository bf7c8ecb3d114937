package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestNATSFlagsHelp checks that every command talking to NATS offers the
// shared connection flags, each with a readable placeholder.
func TestNATSFlagsHelp(t *testing.T) {
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s+--server string\s`),
		regexp.MustCompile(`(?m)^\s+--context NAME\s+start from the nats CLI context NAME`),
		regexp.MustCompile(`(?m)^\s+--creds string\s`),
		regexp.MustCompile(`(?m)^\s+--tls-ca string\s`),
		regexp.MustCompile(`(?m)^\s+--timeout duration\s`),
	}
	for _, cmd := range [][]string{{"agent"}, {"archive", "create"}, {"events"}, {"governor", "list"}, {"put"}, {"status"}} {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			help := mmsOK(t, "", append(cmd, "--help")...).stdout
			for _, re := range want {
				if !re.MatchString(help) {
					t.Errorf("mms %s --help lacks %s:\n%s", strings.Join(cmd, " "), re, help)
				}
			}
		})
	}
}
