package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mms-io/mms/internal/fleetstatus"
	"github.com/mms-io/mms/packer"
)

// The flags `mms status` puts on a node.
const (
	flagStale   = "stale"
	flagStopped = "stopped"
	flagBehind  = "behind"
	flagError   = "error"
	flagNATS    = "nats"
	flagInvalid = "invalid"
)

// isProblem reports whether flag fails --check.
func isProblem(flag string) bool {
	switch flag {
	case flagStale, flagStopped, flagBehind, flagError, flagInvalid:
		return true
	}
	return false
}

// defaultStaleAfter is the staleness limit for documents that do not say
// their heartbeat.
const defaultStaleAfter = 3 * fleetstatus.DefaultHeartbeat

// nodeFlags returns the flags of one agent at now.
func nodeFlags(r nodeRow, now time.Time, cur *currentSpec, staleAfter time.Duration) []string {
	d := r.doc
	if d == nil {
		return []string{flagInvalid}
	}
	var flags []string
	if !d.StoppedAt.IsZero() {
		flags = append(flags, flagStopped)
	} else {
		limit := staleAfter
		if limit <= 0 {
			limit = defaultStaleAfter
			if hb := d.HeartbeatInterval(); hb > 0 {
				limit = 3 * hb
			}
		}
		if now.Sub(d.UpdatedAt) > limit {
			flags = append(flags, flagStale)
		}
	}
	if cur != nil && behind(d.Spec, cur) {
		flags = append(flags, flagBehind)
	}
	if d.Spec.Error != "" || slices.ContainsFunc(d.Machines, func(m fleetstatus.Machine) bool { return m.LastError != "" }) {
		flags = append(flags, flagError)
	}
	if len(d.NATS.PermissionViolations) > 0 {
		flags = append(flags, flagNATS)
	}
	return flags
}

// behind reports whether an agent runs an older spec than cur: a lower
// serial for v2, another digest (or none) for v1.
func behind(s fleetstatus.Spec, cur *currentSpec) bool {
	if cur.format == packer.FormatV1 {
		return s.Format == "" || (s.Digest != "" && s.Digest != cur.digest)
	}
	return s.Serial < cur.serial
}

// printStatusTable prints one line per agent.
func printStatusTable(a *app, rows []nodeRow, now time.Time) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tSERIAL\tMACHINES\tUPDATED\tFLAGS")
	for _, r := range rows {
		if r.doc == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\n", r.key, strings.Join(r.flags, ","))
			continue
		}
		d := r.doc
		serial := "-"
		switch {
		case d.Spec.Format == "v1":
			serial = "v1"
		case d.Spec.Serial > 0:
			serial = fmt.Sprint(d.Spec.Serial)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Identity, serial, machinesSummary(d.Machines), age(now.Sub(d.UpdatedAt))+" ago", strings.Join(r.flags, ","))
	}
	tw.Flush()
	for _, r := range rows {
		if r.doc == nil {
			a.log.Warn("unreadable status document", "key", r.key, "error", r.err)
		}
	}
}

// machinesSummary counts machines per state: "3 (RUN 2, MANAGE 1)".
func machinesSummary(ms []fleetstatus.Machine) string {
	if len(ms) == 0 {
		return "0"
	}
	counts := map[string]int{}
	for _, m := range ms {
		counts[cmp.Or(m.State, "not running")]++
	}
	states := make([]string, 0, len(counts))
	for s := range counts {
		states = append(states, s)
	}
	slices.SortFunc(states, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%s %d", s, counts[s])
	}
	return fmt.Sprintf("%d (%s)", len(ms), strings.Join(parts, ", "))
}

// age formats a duration the way people read ages: 4s, 9m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
