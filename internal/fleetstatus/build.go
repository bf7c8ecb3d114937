package fleetstatus

import (
	"cmp"
	"slices"
	"strings"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/manager"
)

// failedOutcome reports whether the manager's outcome for a machine means
// its reason is a problem.
func failedOutcome(outcome manager.EntryOutcome) bool {
	return outcome == manager.EntryFailed || outcome == manager.EntryRolledBack
}

// machineList merges the running machines with what the recorder knows:
// each running machine gets the manager's result and the host's load error
// for its name; entries the manager failed on and machines the host failed
// to load that are not running are listed with an empty state. Skipped and
// purged entries are not this node's business and are left out.
func machineList(states []agent.MachineStatus, rec recorded) []Machine {
	out := make([]Machine, 0, len(states))
	seen := make(map[string]bool, len(states))
	for _, st := range states {
		seen[st.Name] = true
		m := Machine{
			Name: st.Name, Version: st.Version, State: st.State, Path: st.Path,
			CompiledIn: st.CompiledIn, LastOutcome: agent.HostLoaded,
		}
		var problems []string
		if res, ok := rec.results[st.Name]; ok {
			m.Checksum, m.LastOutcome = res.Checksum, string(res.Outcome)
			if failedOutcome(res.Outcome) && res.Reason != "" {
				problems = append(problems, res.Reason)
			}
		}
		if lr, ok := rec.loads[st.Name]; ok && lr.err != "" {
			problems = append(problems, "load "+lr.version+": "+lr.err)
		}
		for _, w := range st.Watchers {
			if w.LastError != "" {
				problems = append(problems, w.Name+": "+w.LastError)
			}
		}
		m.LastError = strings.Join(problems, "; ")
		out = append(out, m)
	}
	for name, res := range rec.results {
		if seen[name] || !failedOutcome(res.Outcome) {
			continue
		}
		seen[name] = true
		out = append(out, Machine{Name: name, Checksum: res.Checksum, LastOutcome: string(res.Outcome), LastError: res.Reason})
	}
	for name, lr := range rec.loads {
		if seen[name] {
			continue
		}
		out = append(out, Machine{Name: name, Version: lr.version, Path: lr.path, LastOutcome: agent.HostLoadFailed, LastError: lr.err})
	}
	slices.SortFunc(out, func(a, b Machine) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
