package main

import "testing"

func TestMemProfileRate(t *testing.T) {
	const def = 512 * 1024
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"agent"}, 0},
		{[]string{"agent", "--public-key", "k"}, 0},
		{[]string{"-v", "agent"}, 0},
		{[]string{"--verbose", "agent"}, 0},
		{[]string{"--verbose=true", "agent"}, 0},
		{[]string{"bench", "--put-profile", "p"}, def},
		{[]string{"pack", "agent"}, def}, // a file named agent, not the command
		{[]string{"status", "--identity", "agent"}, def},
		{nil, def},
		{[]string{"-v"}, def},
	} {
		if got := memProfileRate(tc.args, def); got != tc.want {
			t.Errorf("memProfileRate(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}
