package manager_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayers keeps the import graph bottom-up (README "Layout"): each
// package must not depend, even indirectly, on the packages above it.
func TestLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const mod = "github.com/mms-io/mms/"
	above := map[string][]string{
		"spec":     {"packer", "machine", "manager", "agent", "watchers"},
		"packer":   {"machine", "manager", "agent", "watchers"},
		"watchers": {"spec", "packer", "machine", "manager", "agent"},
		"machine":  {"packer", "manager", "agent"},
		"manager":  {"agent", "manager/machineswatcher", "manager/archivewatcher", "manager/mmsmanager", "plugins"},
		"agent":    {"packer", "manager", "plugins"},
		"fleet":    {"provision", "bench", "plugins", "cmd/mms"},
	}
	for pkg, banned := range above {
		out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[strings.TrimPrefix(d, mod)] = true
		}
		for _, b := range banned {
			if deps[b] {
				t.Errorf("%s imports %s (directly or not), which sits above it", pkg, b)
			}
		}
	}
}
