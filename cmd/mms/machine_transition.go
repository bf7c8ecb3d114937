package main

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/fleet"
	"github.com/mms-io/mms/manager"
)

// noAnswer is the outcome shown for a node that reports status but did not
// answer in time.
const noAnswer = "no_answer"

// transitionRow is one node's line of `mms machine transition`.
type transitionRow struct {
	Identity string `json:"identity"`
	// Outcome is an agent.TransitionOutcome or noAnswer.
	Outcome string `json:"outcome"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Error   string `json:"error,omitempty"`
	// StoppedAt is when a node that did not answer last said its agent
	// stopped.
	StoppedAt time.Time `json:"stopped_at,omitzero"`
}

// newMachineTransitionCmd is `mms machine transition`: fire a transition
// of a machine on running nodes.
func (a *app) newMachineTransitionCmd() *cobra.Command {
	var (
		nf       natsFlags
		identity string
		wait     time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "transition MACHINE TRANSITION",
		Short: "Fire a transition of a machine on running nodes (Choria's machine_transition)",
		Long: `Transition fires TRANSITION of the machine MACHINE on every running node
whose identity matches --identity (a regular expression, unanchored, as
for 'mms reconcile' and 'mms events'; default every node), over NATS, and prints what each node did:

  transitioned   the machine left the state shown for the next one
  refused        the transition cannot fire in the machine's current state
                 (or the machine has no such transition); nothing changed
  no machine     the node runs no machine of that name
  no answer      the node reports status but did not answer within --wait

A transition moves a machine only along its own machine.yaml, as its
watchers would; it changes nothing a spec installs. The compiled-in
manager machine ` + manager.MachineName + ` has two for operators: enter_maintenance
(nothing is installed, repaired or purged; running machines keep running)
and resume (manage again, at once).

The request is a plain message on ` + agent.TransitionRequestSubject + `, signed by nothing:
NATS permissions decide who may send it. The configuration 'mms nats-config'
writes lets the operator send it and nodes only answer; on a server
without permissions anyone who may publish there can move machines.

The command exits 1 when a node did not transition.`,
		Example: `  # stop managing machines on the web nodes, then manage again
  mms machine transition --identity '^web' ` + manager.MachineName + ` enter_maintenance
  mms machine transition --identity '^web' ` + manager.MachineName + ` resume

  # a transition of your own machine, on every node, as JSON
  mms machine transition backup run_now --json --server nats://nats1:4222 --nkey operator.nk`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkIdentity(identity); err != nil {
				return err
			}
			req := agent.TransitionRequest{Identity: identity, Machine: args[0], Transition: args[1]}
			if err := req.Check(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout+wait)
			defer cancel()
			nc, asked, err := a.askNodes(ctx, &nf, "mms machine transition", identity, wait)
			if err != nil {
				return err
			}
			defer nc.Close()
			expect, known := asked.identities, asked.stopped
			replies, err := agent.RequestTransition(ctx, nc.Conn, req, wait, expect)
			if err != nil {
				return nc.explain(err)
			}
			rows := transitionRows(replies, expect, known)
			if len(rows) == 0 {
				return nc.noAnswer(wait, identity)
			}
			if asJSON {
				if err := printJSON(a.stdout, rows); err != nil {
					return err
				}
			} else {
				a.printTransitionRows(rows, req, wait)
			}
			failed := 0
			for _, r := range rows {
				if r.Outcome != string(agent.Transitioned) {
					failed++
				}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d node%s did not transition %s (%s)", failed, len(rows), plural(len(rows)), req.Machine, req.Transition)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	nf.registerClient(cmd, f)
	f.StringVar(&identity, "identity", "", identityUsage)
	f.DurationVar(&wait, "wait", 2*time.Second, "wait this long for the nodes to answer")
	f.BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}

// askedNodes are the nodes a request every node answers (mms machine
// transition, mms plan) expects answers from: those that report status
// and match the request's identity pattern.
type askedNodes struct {
	identities []string
	stopped    map[string]time.Time // when each last said its agent stopped
	tracker    *fleet.Tracker       // nil when the status documents cannot be read
}

// askNodes checks wait, connects (the caller closes the connection) and
// lists the nodes that should answer a request for identity; when they
// cannot be listed, it says so and the request goes on without.
func (a *app) askNodes(ctx context.Context, nf *natsFlags, name, identity string, wait time.Duration) (natsConn, askedNodes, error) {
	if err := checkIdentity(identity); err != nil {
		return natsConn{}, askedNodes{}, err
	}
	if wait <= 0 {
		return natsConn{}, askedNodes{}, fmt.Errorf("--wait %v: want a positive duration", wait)
	}
	nc, err := nf.connect(ctx, a, name)
	if err != nil {
		return natsConn{}, askedNodes{}, err
	}
	asked, err := a.reportingNodes(ctx, nc, identity)
	if err != nil {
		fmt.Fprintf(a.stderr, "mms: cannot list the nodes that report status (%v): nodes that do not answer are not listed\n", err)
	}
	return nc, asked, nil
}

// reportingNodes returns the nodes that report status and match the
// pattern identity (the nodes that should answer).
func (a *app) reportingNodes(ctx context.Context, nc natsConn, identity string) (askedNodes, error) {
	re, err := regexp.Compile(identity)
	if err != nil {
		return askedNodes{}, err
	}
	js, err := nc.JetStream()
	if err != nil {
		return askedNodes{}, err
	}
	if _, err := a.openStatusBucket(ctx, js, nc, false); err != nil {
		return askedNodes{}, err
	}
	t, err := fleet.Read(ctx, js, fleet.Options{StatusOnly: true})
	if err != nil {
		return askedNodes{}, nc.explain(err)
	}
	out := askedNodes{stopped: map[string]time.Time{}, tracker: t}
	for _, n := range t.Nodes(time.Now()) {
		if n.Doc == nil || !re.MatchString(n.Doc.Identity) {
			continue
		}
		out.identities = append(out.identities, n.Doc.Identity)
		out.stopped[n.Doc.Identity] = n.Doc.StoppedAt
	}
	return out, nil
}

// transitionRows merges the replies with the nodes expected to answer,
// sorted by identity.
func transitionRows(replies []agent.TransitionReply, expect []string, stopped map[string]time.Time) []transitionRow {
	var rows []transitionRow
	answered := map[string]bool{}
	for _, r := range replies {
		answered[r.Identity] = true
		rows = append(rows, transitionRow{Identity: r.Identity, Outcome: string(r.Outcome), From: r.From, To: r.To, Error: r.Error})
	}
	for _, id := range expect {
		if !answered[id] {
			rows = append(rows, transitionRow{Identity: id, Outcome: noAnswer, StoppedAt: stopped[id]})
		}
	}
	slices.SortFunc(rows, func(a, b transitionRow) int { return cmp.Compare(a.Identity, b.Identity) })
	return rows
}

// printTransitionRows prints one aligned line per node.
func (a *app) printTransitionRows(rows []transitionRow, req agent.TransitionRequest, wait time.Duration) {
	width := len("NODE")
	for _, r := range rows {
		width = max(width, len(graphic(r.Identity)))
	}
	fmt.Fprintf(a.stdout, "%-*s  %-12s  %s\n", width, "NODE", "RESULT", "DETAIL")
	for _, r := range rows {
		var result, detail string
		switch r.Outcome {
		case string(agent.Transitioned):
			result, detail = "transitioned", fmt.Sprintf("%s: %s -> %s", req.Machine, r.From, r.To)
		case string(agent.TransitionRefused):
			result, detail = "refused", r.Error
		case string(agent.NoSuchMachine):
			result, detail = "no machine", r.Error
		default:
			result, detail = "no answer", fmt.Sprintf("within %v", wait)
			if !r.StoppedAt.IsZero() {
				detail += fmt.Sprintf("; its agent stopped at %s", r.StoppedAt.Local().Format(time.DateTime))
			}
		}
		fmt.Fprintf(a.stdout, "%-*s  %-12s  %s\n", width, graphic(r.Identity), result, strings.TrimSpace(graphic(detail)))
	}
}
