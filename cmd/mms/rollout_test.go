package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/spec"
)

// TestPrintRollout prints rollouts as fleet computes them: the versions
// by name on both sides, where the rollout is (halted and why, pausing
// and for how long, done) and every node of every wave.
func TestPrintRollout(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	policy := spec.Rollout{Waves: []string{"1", "100%"}, Pause: spec.Duration(30 * time.Second)}
	newV := fleet.Version{Name: "2.0.1", Checksum: "3f2a8c1b2d3e4f5a"}
	waves := func(first, second fleet.RolloutNode) []fleet.Wave {
		return []fleet.Wave{
			{Wave: 1, Size: "1", Nodes: []fleet.RolloutNode{first}},
			{Wave: 2, Size: "100%", Nodes: []fleet.RolloutNode{second}},
		}
	}
	tests := []struct {
		name string
		r    fleet.Rollout
		want string
	}{
		{
			name: "halted by a node that stopped reporting",
			r: fleet.Rollout{
				Machine: "web", Checksum: newV.Checksum, New: newV, OldVersions: []string{"2.0.0"}, Policy: policy, Current: 1,
				Halted: true, HaltedAt: 1, Reason: "node web3 stopped reporting",
				Waves: waves(fleet.RolloutNode{Identity: "web3", State: fleet.StateStale, Version: "2.0.1", Detail: "no update for 9s"},
					fleet.RolloutNode{Identity: "web1", State: fleet.StateHeld, Version: "2.0.0", Detail: "rollout halted at wave 1 (node web3 stopped reporting)"}),
			},
			want: `web: 2.0.0 → 2.0.1 (3f2a8c1b2d3e)  waves 1, 100%, pause 30s
HALTED at wave 1: node web3 stopped reporting
WAVE  SIZE  NODE  STATE  VERSION  DETAIL
1     1     web3  stale  2.0.1    no update for 9s
2     100%  web1  held   2.0.0    rollout halted at wave 1 (node web3 stopped reporting)
`,
		},
		{
			name: "pausing before wave 2",
			r: fleet.Rollout{
				Machine: "web", Checksum: newV.Checksum, New: newV, OldVersions: []string{"2.0.0"}, Policy: policy, Current: 2, PauseUntil: now.Add(14 * time.Second),
				Waves: waves(fleet.RolloutNode{Identity: "web3", State: fleet.StateHealthy, Version: "2.0.1"},
					fleet.RolloutNode{Identity: "web1", State: fleet.StateHeld, Version: "2.0.0", Detail: "wave 1 is healthy; pausing 14s before wave 2"}),
			},
			want: `web: 2.0.0 → 2.0.1 (3f2a8c1b2d3e)  waves 1, 100%, pause 30s
under way: wave 2 of 2, starting in 14s (the pause after wave 1)
WAVE  SIZE  NODE  STATE    VERSION  DETAIL
1     1     web3  healthy  2.0.1    
2     100%  web1  held     2.0.0    wave 1 is healthy; pausing 14s before wave 2
`,
		},
		{
			name: "done, the old version forgotten",
			r: fleet.Rollout{
				Machine: "web", Checksum: newV.Checksum, New: newV, Policy: policy, Done: true,
				Waves: waves(fleet.RolloutNode{Identity: "web3", State: fleet.StateHealthy, Version: "2.0.1"},
					fleet.RolloutNode{Identity: "web1", State: fleet.StateHealthy, Version: "2.0.1"}),
			},
			want: `web: 2.0.1 (3f2a8c1b2d3e)  waves 1, 100%, pause 30s
done: every node runs the new version healthy
WAVE  SIZE  NODE  STATE    VERSION  DETAIL
1     1     web3  healthy  2.0.1    
2     100%  web1  healthy  2.0.1    
`,
		},
		{
			name: "a first install, by checksum until a node names it",
			r: fleet.Rollout{
				Machine: "web", Checksum: newV.Checksum, New: fleet.Version{Checksum: newV.Checksum}, Policy: policy, Current: 1,
				Waves: waves(fleet.RolloutNode{Identity: "web3", State: fleet.StateOld}, fleet.RolloutNode{Identity: "web1", State: fleet.StateOld}),
			},
			want: `web: nothing → 3f2a8c1b2d3e  waves 1, 100%, pause 30s
under way: wave 1 of 2
WAVE  SIZE  NODE  STATE  VERSION  DETAIL
1     1     web3  old             
2     100%  web1  old             
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printRollout(&out, tt.r, now)
			if out.String() != tt.want {
				t.Errorf("printRollout() =\n%s\nwant\n%s", out.String(), tt.want)
			}
		})
	}
}
