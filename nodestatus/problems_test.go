package nodestatus

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/internal/natsbox"
)

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  Document
		want []string
	}{
		{"healthy", Document{
			Applied: &Applied{Serial: 7, Format: "v2"}, Seen: &Seen{Serial: 7, Format: "v2", Outcome: SeenApplied},
			Entries:  []Entry{{Name: "web", Outcome: "installed"}, {Name: "db", Outcome: "skipped", Reason: "match does not select this node"}},
			Machines: []Machine{{Name: "web", State: "RUN"}},
		}, nil},
		{"no spec published is not the node's problem", Document{Seen: &Seen{Outcome: SeenMissing, Reason: "data item missing"}}, nil},
		{"everything, in order", Document{
			Applied: &Applied{Serial: 7, Format: "v2", Stale: true},
			Seen:    &Seen{Serial: 4, Format: "v2", Outcome: SeenIgnoredOlder, Reason: "open spec: ignored older spec (serial 4 < 7)"},
			Entries: []Entry{
				{Name: "web", Outcome: "failed", Reason: "install: sha256 mismatch"},
				{Name: "cache", Outcome: "rolled_back", Reason: "version abc failed to load"},
				{Name: "ok", Outcome: "unchanged"},
			},
			Machines: []Machine{
				{Name: "web", State: "RUN", LastError: "install: sha256 mismatch"},
				{Name: "probe", State: "RUN", LastError: "check: exit status 1"},
			},
			NATS: natsbox.ConnState{PermissionViolations: []natsbox.Violation{{Message: `Permissions Violation for Publish to "x"`}}},
		}, []string{
			"serial 4 ignored-older: open spec: ignored older spec (serial 4 < 7)",
			"applied spec serial 7 has expired: its machines keep running and nothing is purged until a new spec is published",
			"web failed: install: sha256 mismatch",
			"cache rolled_back: version abc failed to load",
			"probe: check: exit status 1",
			`nats: Permissions Violation for Publish to "x"`,
		}},
		{"v1 and undecodable specs", Document{Seen: &Seen{Format: "v1", Digest: "0123456789abcdef", Outcome: SeenLegacyRefused, Reason: "v1 spec refused"}}, []string{
			"v1 0123456789ab legacy-refused: v1 spec refused",
		}},
		{"a spec that does not decode", Document{Seen: &Seen{Outcome: SeenMalformed}}, []string{"spec malformed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.doc.Problems()); diff != "" {
				t.Errorf("Problems() (-want +got):\n%s", diff)
			}
		})
	}
}
