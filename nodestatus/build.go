package nodestatus

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
	results := make(map[string]result, len(rec.results))
	for _, res := range rec.results {
		results[res.Name] = res
	}
	out := make([]Machine, 0, len(states))
	seen := make(map[string]bool, len(states))
	for _, st := range states {
		seen[st.Name] = true
		m := Machine{
			Name: st.Name, Version: st.Version, State: st.State, Path: st.Path,
			CompiledIn: st.CompiledIn, LastOutcome: agent.HostLoaded,
		}
		var problems []string
		if res, ok := results[st.Name]; ok {
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
	for _, res := range rec.results {
		if seen[res.Name] || !failedOutcome(res.Outcome) {
			continue
		}
		seen[res.Name] = true
		out = append(out, Machine{Name: res.Name, Checksum: res.Checksum, LastOutcome: string(res.Outcome), LastError: res.Reason})
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

// entryList is one entry per result of the manager's last accepted pass,
// in its order, with the version running under each name, then entries
// downloading for the pass under way: an entry with a download in progress
// shows as downloading (the pass's report replaces it); a download of a
// name the last pass did not have is appended, by name.
func entryList(states []agent.MachineStatus, rec recorded) []Entry {
	versions := make(map[string]string, len(states))
	for _, st := range states {
		versions[st.Name] = st.Version
	}
	out := make([]Entry, 0, len(rec.results))
	listed := make(map[string]bool, len(rec.results))
	for _, res := range rec.results {
		e := Entry{
			Name: res.Name, Outcome: string(res.Outcome), Reason: res.Reason,
			Version: versions[res.Name], Checksum: res.Checksum, Match: res.Match, Hold: res.Hold,
			Installed: res.Installed, Health: string(res.Health), HealthyAt: res.HealthyAt,
		}
		if p, ok := rec.progress[res.Name]; ok && !listed[res.Name] {
			e.Outcome, e.Download = EntryDownloading, &p
		}
		listed[res.Name] = true
		out = append(out, e)
	}
	var fresh []string
	for name := range rec.progress {
		if !listed[name] {
			fresh = append(fresh, name)
		}
	}
	slices.Sort(fresh)
	for _, name := range fresh {
		p := rec.progress[name]
		out = append(out, Entry{Name: name, Outcome: EntryDownloading, Version: versions[name], Download: &p})
	}
	return out
}
