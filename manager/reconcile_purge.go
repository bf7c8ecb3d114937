package manager

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// purge unloads and removes every machine this agent installed (it has an
// install record in records, as the pass read them) whose name is not in
// keep. inSpec names the spec's entries, to say why a machine goes.
// Machines without a record are never touched. It returns one result per
// machine it tried to remove, by name, and an error when the records could
// not be read (err: then nothing is removed).
func (r *Reconciler) purge(ctx context.Context, records map[string]Record, err error, keep, inSpec map[string]bool) ([]MachineResult, error) {
	if err != nil {
		r.log.Error("reading install records failed; purging nothing", "error", err)
		return nil, fmt.Errorf("purge: read install records: %w", err)
	}
	var out []MachineResult
	for _, res := range toPurge(records, keep, inSpec) {
		name := res.Name
		log := r.log.With("managed", name, "reason", res.Reason)
		if err := r.cfg.Host.UnloadMachine(ctx, name); err != nil {
			res.Outcome, res.Reason, res.Retryable = EntryFailed, fmt.Sprintf("purge (%s): stop machine: %v", res.Reason, err), true
			log.Error("stopping machine to purge it failed", "error", err)
			out = append(out, res)
			continue
		}
		if err := r.cfg.Installer.Purge(ctx, name); err != nil {
			res.Outcome, res.Reason, res.Retryable = EntryFailed, fmt.Sprintf("purge (%s): %v", res.Reason, err), true
			log.Error("purging machine failed", "error", err)
			out = append(out, res)
			continue
		}
		res.Outcome = EntryPurged
		log.Info("machine purged")
		out = append(out, res)
	}
	return out, nil
}

// toPurge returns the machines of records (by name) that keep does not
// keep, by name, each with why it goes (inSpec names the spec's entries)
// and no outcome yet.
func toPurge(records map[string]Record, keep, inSpec map[string]bool) []MachineResult {
	var out []MachineResult
	for _, name := range slices.Sorted(maps.Keys(records)) {
		if keep[name] {
			continue
		}
		res := MachineResult{Name: name, Reason: "not in the spec"}
		if inSpec[name] {
			res.Reason = "the spec's matcher no longer selects this node"
		}
		out = append(out, res)
	}
	return out
}
