// Package nodestatustest makes status documents for the tests of the
// packages that read them (fleet, mms status, the web page).
package nodestatustest

import (
	"fmt"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/nodestatus"
)

// Applied is the document of a connected agent, trusting key "k", that
// applied the v2 spec with serial (digest "d<serial>") and runs machines;
// updated at updated, started an hour before, every 30s.
func Applied(identity string, serial uint64, updated time.Time, machines ...nodestatus.Machine) nodestatus.Document {
	if machines == nil {
		machines = []nodestatus.Machine{}
	}
	digest := fmt.Sprintf("d%d", serial)
	return nodestatus.Document{
		Version: nodestatus.DocumentVersion, Identity: identity, AgentVersion: "dev", StartedAt: updated.Add(-time.Hour), UpdatedAt: updated, Heartbeat: "30s",
		Trust:    &nodestatus.Trust{KeyIDs: []string{"k"}, Threshold: 1},
		Applied:  &nodestatus.Applied{Serial: serial, Format: "v2", Digest: digest},
		Seen:     &nodestatus.Seen{Serial: serial, Format: "v2", Digest: digest, Outcome: nodestatus.SeenApplied},
		Entries:  []nodestatus.Entry{},
		Machines: machines, NATS: natsbox.ConnState{Connected: true},
	}
}
