package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/manager"
)

// newReconcileCmd is `mms reconcile`: ask nodes to check their spec now.
func (a *app) newReconcileCmd() *cobra.Command {
	var (
		nf       natsFlags
		identity string
		wait     time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Ask nodes to reconcile now (retry failed entries, repair drift)",
		Long: `Ask nodes to reconcile now: each agent whose identity matches --identity (a
regular expression, unanchored, as for 'mms events' and 'mms machine
transition'; default every agent) checks its spec at once, as its periodic
check would a little later: failed entries are retried, drift is repaired.
Nodes answer, and the command prints who did (--json: a JSON array).

The nudge is a plain message on ` + manager.NudgeSubject + `, signed by nothing: it can
only make a node check the spec it already has, never change what runs.
An agent handles at most one nudge a second.`,
		Example: `  mms reconcile
  mms reconcile --identity '^web[0-9]+$' --json
  mms reconcile --identity '^web' --server nats://nats1:4222 --creds ops.creds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkIdentity(identity); err != nil {
				return err
			}
			if wait <= 0 {
				return fmt.Errorf("--wait %v: want a positive duration", wait)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout)
			defer cancel()
			nc, err := nf.connect(ctx, a, "mms reconcile")
			if err != nil {
				return err
			}
			defer nc.Close()
			nodes, err := nudge(ctx, nc.Conn, identity, wait)
			if err != nil {
				return nc.explain(err)
			}
			if len(nodes) == 0 {
				return nc.noAnswer(wait, identity)
			}
			if asJSON {
				return printNudged(a.stdout, nodes)
			}
			fmt.Fprintf(a.stdout, "nudged %d node%s: %s\n", len(nodes), plural(len(nodes)), strings.Join(nodes, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	nf.registerClient(cmd, f)
	f.StringVar(&identity, "identity", "", identityUsage)
	f.DurationVar(&wait, "wait", 2*time.Second, "collect answers for this long")
	f.BoolVar(&asJSON, "json", false, "print the nodes that answered as a JSON array")
	return cmd
}

// identityUsage is the help of --identity, the same for every command
// that takes it (reconcile, events, machine transition).
const identityUsage = "only nodes whose identity matches the regular expression `RE` (unanchored: web1 matches web10; '^web1$' only web1)"

// checkIdentity refuses an --identity that is not a regular expression.
func checkIdentity(re string) error {
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("--identity %q: %w", re, err)
	}
	return nil
}

// nudgedNode is one element of `mms reconcile --json`.
type nudgedNode struct {
	Identity string `json:"identity"`
}

// printNudged prints the nodes that answered a nudge as a JSON array.
func printNudged(w io.Writer, nodes []string) error {
	rows := make([]nudgedNode, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, nudgedNode{Identity: n})
	}
	return printJSON(w, rows)
}

// nudge publishes a reconcile nudge for identity and returns the sorted
// identities of the nodes that answered within wait.
func nudge(ctx context.Context, nc *nats.Conn, identity string, wait time.Duration) ([]string, error) {
	payload, err := json.Marshal(manager.Nudge{Identity: identity})
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	replies := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil, fmt.Errorf("subscribe to answers: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(manager.NudgeSubject, inbox, payload); err != nil {
		return nil, fmt.Errorf("publish nudge on %s: %w", manager.NudgeSubject, err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("publish nudge on %s: %w", manager.NudgeSubject, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	seen := map[string]bool{}
	for {
		select {
		case m := <-replies:
			var r manager.NudgeReply
			if json.Unmarshal(m.Data, &r) == nil && r.Identity != "" {
				seen[graphic(r.Identity)] = true // answers are untrusted text
			}
		case <-timer.C:
			return sortedKeys(seen), nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return sortedKeys(seen), nil
			}
			return nil, ctx.Err()
		}
	}
}

// graphic returns s, or s quoted with escapes when it holds characters a
// terminal would act on (control sequences).
func graphic(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) }) < 0 {
		return s
	}
	return strconv.QuoteToGraphic(s)
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
