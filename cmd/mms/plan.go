package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/manager"
)

// planOutput is `mms plan --json`.
type planOutput struct {
	// Spec names the spec planned.
	Spec string `json:"spec"`
	// Answered are the nodes' answers, by identity.
	Answered []manager.PlanReply `json:"answered"`
	// NoAnswer are the nodes that report status but did not answer.
	NoAnswer []string `json:"no_answer"`
	// Refuses is set when a node would refuse the spec or fail an entry.
	Refuses bool `json:"refuses"`
}

func (a *app) newPlanCmd() *cobra.Command {
	var (
		nf       natsFlags
		identity string
		wait     time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "plan [SPEC|-]",
		Short: "Ask every agent what it would do with a signed spec, without putting it",
		Long: `Plan sends the signed spec (SPEC, or stdin) to every running agent whose
identity matches --identity (a regular expression, unanchored, as for
'mms reconcile'; default all) over NATS; each dry-runs it with
its own replay ledger, facts, files and commands, and what the fleet
reports: the steps of a real pass up to, not including, download and
install (signatures, serial, expiry, every entry's validation, matcher and
hold, what it would purge, its rollout wave). Nothing changes on any node.
It prints one line per node and entry, then a summary per machine:

  install     the node would install the entry
  upgrade     it runs another version (shown: old → new) and would move,
              in the wave shown when the entry has a rollout policy (and
              when it would wait: for an earlier wave, a pause, a halt)
  no change   it runs that version already
  hold        the entry's hold selects it: it keeps what it runs
  skip        the entry's matcher does not select it (why)
  purge       it would remove a machine it installed (why)
  refuse      it would refuse the spec (untrusted, an older serial,
              expired, ...) or fail the entry (why)
  no answer   it reports status but did not answer within --wait

Versions are named as nodes reported running them; a version no node ran
yet shows as its checksum. The waves are the agents' own rule on what the
fleet reports now: a plan of a spec not put yet shows who goes first.

Exit codes: 0 when every node that answered would apply the spec, 2 when
one would refuse it or fail an entry (each named on stderr), 1 when no
agent answered. Nodes that do not answer are listed and do not change the
exit code.

The request is the envelope itself on ` + manager.PlanSubject + `; NATS permissions decide
who may send it ('mms nats-config' lets the operator send it and nodes only
answer). It can only make nodes read the spec: they act on specs put in
the spec bucket alone.`,
		Example: `  mms pack machines.json --key-file ops.key > spec.json
  mms plan spec.json
  mms plan spec.json --identity '^web' --json | jq '.answered[].entries[] | select(.action == "refuse")'
  mms put spec.json --wait 10m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "-"
			if len(args) == 1 {
				path = args[0]
			}
			data, err := a.readSpecArg(path)
			if err != nil {
				return err
			}
			next, err := inspectSpec(data, "mms plan")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout+wait)
			defer cancel()
			nc, asked, err := a.askNodes(ctx, &nf, "mms plan", identity, wait)
			if err != nil {
				return err
			}
			defer nc.Close()
			expect, t := asked.identities, asked.tracker
			replies, err := manager.RequestPlan(ctx, nc.Conn, data, identity, wait, expect)
			if err != nil {
				return nc.explain(err)
			}
			if len(replies) == 0 {
				return nc.noAnswer(wait, identity)
			}
			out := planOutput{Spec: fleet.WaitLabel(next), Answered: replies, NoAnswer: []string{}}
			slices.SortFunc(out.Answered, func(a, b manager.PlanReply) int { return cmp.Compare(a.Identity, b.Identity) })
			answered := map[string]bool{}
			for _, r := range replies {
				answered[r.Identity] = true
				out.Refuses = out.Refuses || r.Refuses()
			}
			for _, id := range expect {
				if !answered[id] {
					out.NoAnswer = append(out.NoAnswer, id)
				}
			}
			slices.Sort(out.NoAnswer)
			if asJSON {
				if err := printJSON(a.stdout, out); err != nil {
					return err
				}
			} else {
				versions := func(string, string) string { return "" }
				if t != nil {
					versions = t.Version
				}
				printPlan(a.stdout, out, versions, wait)
			}
			if out.Refuses {
				var lines []string
				for _, r := range out.Answered {
					if r.Refuses() {
						lines = append(lines, "  "+termtext.Escape(r.Identity)+": "+termtext.Escape(refusal(r)))
					}
				}
				return &exitError{code: 2, err: fmt.Errorf("%d of %d agents would refuse %s or fail an entry:\n%s", len(lines), len(out.Answered), out.Spec, strings.Join(lines, "\n"))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	nf.registerClient(cmd, f)
	f.StringVar(&identity, "identity", "", identityUsage)
	f.DurationVar(&wait, "wait", 3*time.Second, "wait this long for the nodes to answer")
	f.BoolVar(&asJSON, "json", false, "print the answers as JSON")
	return cmd
}

// refusal says why r would refuse the spec, or which entries it would
// fail.
func refusal(r manager.PlanReply) string {
	if r.Refused != "" {
		return string(r.Refused) + ": " + r.Reason
	}
	var parts []string
	for _, e := range r.Entries {
		if e.Action == manager.PlanRefuse {
			parts = append(parts, e.Name+": "+e.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// planActions are the actions in the order a summary counts them.
var planActions = []manager.PlanAction{manager.PlanInstall, manager.PlanUpgrade, manager.PlanNoChange, manager.PlanHold,
	manager.PlanSkip, manager.PlanPurge, manager.PlanRefuse}

// actionWord is an action as the table prints it.
func actionWord(a manager.PlanAction) string { return strings.ReplaceAll(string(a), "_", " ") }

// printPlan prints one line per node and entry, then a summary per
// machine; versions names a version by its checksum.
func printPlan(w io.Writer, out planOutput, versions func(machine, checksum string) string, wait time.Duration) {
	esc := termtext.Escape
	name := func(machine, checksum, running string) string {
		return cmp.Or(running, versions(machine, checksum), short(checksum))
	}
	fmt.Fprintf(w, "plan of %s: %d of %d agents answered\n", out.Spec, len(out.Answered), len(out.Answered)+len(out.NoAnswer))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMACHINE\tACTION\tVERSION\tWAVE\tDETAIL")
	counts := map[string]map[manager.PlanAction]int{}
	var machines []string
	for _, r := range out.Answered {
		if r.Refused != "" {
			fmt.Fprintf(tw, "%s\t-\trefuse\t\t\t%s\n", esc(r.Identity), esc(string(r.Refused)+": "+r.Reason))
			continue
		}
		for _, e := range r.Entries {
			if counts[e.Name] == nil {
				counts[e.Name] = map[manager.PlanAction]int{}
				machines = append(machines, e.Name)
			}
			counts[e.Name][e.Action]++
			from, to := name(e.Name, e.Installed, e.InstalledVersion), name(e.Name, e.Checksum, "")
			version, detail := "", e.Reason
			switch e.Action {
			case manager.PlanInstall:
				version, detail = "→ "+to, strings.TrimPrefix(e.Held, "held: ")
			case manager.PlanUpgrade:
				version, detail = from+" → "+to, strings.TrimPrefix(e.Held, "held: ")
			case manager.PlanNoChange:
				version = to
			case manager.PlanHold, manager.PlanPurge:
				version, detail = cmp.Or(from, "none"), strings.TrimPrefix(detail, manager.HoldHeld+": ")
			}
			wave := ""
			if e.Wave > 0 {
				wave = fmt.Sprint(e.Wave)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", esc(r.Identity), esc(e.Name), actionWord(e.Action), esc(version), wave, esc(detail))
		}
	}
	for _, id := range out.NoAnswer {
		fmt.Fprintf(tw, "%s\t-\tno answer\t\t\twithin %v\n", esc(id), wait)
	}
	tw.Flush()
	for _, m := range machines {
		var parts []string
		for _, act := range planActions {
			if n := counts[m][act]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", actionWord(act), n))
			}
		}
		fmt.Fprintf(w, "%s: %s\n", esc(m), strings.Join(parts, ", "))
	}
}
