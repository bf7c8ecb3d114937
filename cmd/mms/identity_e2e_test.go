package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestIdentityIsOneRegexpEverywhere: --identity chooses the same nodes in
// mms reconcile, mms events and mms machine transition, an unanchored
// regular expression ("web1" is web1 and web10, not db1), and reconcile
// finds a local agent's server with --state-dir and answers in JSON.
func TestIdentityIsOneRegexpEverywhere(t *testing.T) {
	startFleet(t, "web1", "web10", "db1")
	isolateNATSLookup(t)
	local := []string{"--state-dir", "state-web1"} // the agent with the embedded server

	r := mmsOK(t, "", append([]string{"reconcile", "--identity", "web1", "--wait", "1s", "--json"}, local...)...)
	var nudged []struct {
		Identity string `json:"identity"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &nudged); err != nil {
		t.Fatalf("reconcile --json stdout = %q: %v", r.stdout, err)
	}
	if got := fmt.Sprint(nudged); got != "[{web1} {web10}]" {
		t.Errorf("reconcile --identity web1 nudged %s, want web1 and web10:\n%s", got, r.stdout)
	}
	if r := mmsOK(t, "", append([]string{"reconcile", "--identity", "^web1$", "--wait", "1s"}, local...)...); r.stdout != "nudged 1 node: web1\n" {
		t.Errorf("reconcile --identity '^web1$' = %q, want only web1", r.stdout)
	}

	r = mms(t, "", append([]string{"machine", "transition", "--identity", "web1", "--wait", "1s", "nosuch", "go"}, local...)...)
	rows := regexp.MustCompile(`(?m)^(\S+)\s+no machine\s`).FindAllStringSubmatch(r.stdout, -1)
	var answered []string
	for _, m := range rows {
		answered = append(answered, m[1])
	}
	if r.code != 1 || !slices.Equal(answered, []string{"web1", "web10"}) {
		t.Errorf("machine transition --identity web1: exit %d, nodes %v, want 1 and web1, web10:\n%s%s", r.code, answered, r.stdout, r.stderr)
	}

	events, _, _ := runUntil(t, append([]string{"events", "--since", "5m", "--identity", "web1"}, local...)...)
	waitFor(t, events, " web1 mms_manager ", " web10 mms_manager ")
	all, _, _ := runUntil(t, append([]string{"events", "--since", "5m"}, local...)...)
	waitFor(t, all, " db1 mms_manager ") // replayed after the filtered follower had its chance to
	if strings.Contains(events.String(), " db1 ") {
		t.Errorf("events --identity web1 printed db1's events:\n%s", events)
	}
	if r := mms(t, "", append([]string{"events", "--identity", "web[1"}, local...)...); r.code != 1 || r.stderr != "mms: --identity \"web[1\": error parsing regexp: missing closing ]: `[1`\n" {
		t.Errorf("events --identity 'web[1': exit %d, stderr %q", r.code, r.stderr)
	}
}
