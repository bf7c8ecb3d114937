package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/fleet"
)

func (a *app) newEventsCmd() *cobra.Command {
	var (
		nf      natsFlags
		jsonOut bool
		since   time.Duration
		filter  fleet.EventFilter
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print machine events (transitions and watcher states) as they happen",
		Long: `Events subscribes to ` + agent.EventsSubjects + ` and prints one line per event: time,
identity, machine and what happened. --json prints the CloudEvent JSON
instead. --since replays recent events from the ` + agent.EventsStream + ` stream first
(then follows new ones); it needs that stream to exist. --identity takes a
regular expression, unanchored, as 'mms reconcile' and 'mms machine
transition' do.`,
		Example: `  mms events --since 5m
  mms events --identity '^web' --machine facts
  mms events --identity '^web1$' --type exec --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if filter, err = filter.Compile(); err != nil {
				return fmt.Errorf("--%w", err)
			}
			return a.followEvents(cmd.Context(), nf, since, filter, jsonOut)
		},
	}
	nf.registerClient(cmd, cmd.Flags())
	cmd.Flags().Lookup("timeout").Usage = "give up connecting, and setting up --since, after this long"
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print each event as CloudEvent JSON")
	cmd.Flags().DurationVar(&since, "since", 0, "replay events newer than `DURATION` from the "+agent.EventsStream+" stream")
	cmd.Flags().StringVar(&filter.Machine, "machine", "", "only events of machine `NAME`")
	cmd.Flags().StringVar(&filter.Type, "type", "", "only watcher states of `TYPE` (exec, kv, host, …) or \""+fleet.TransitionType+"\"")
	cmd.Flags().StringVar(&filter.Identity, "identity", "", identityUsage)
	return cmd
}

// followEvents prints events until ctx is done. It connects with the
// shared NATS flags (so --context, --creds and TLS work as for the other
// commands) and says on stderr once it follows, so a person knows it is
// waiting for events rather than stuck.
func (a *app) followEvents(ctx context.Context, nf natsFlags, since time.Duration, filter fleet.EventFilter, jsonOut bool) error {
	client, err := nf.connect(ctx, a, "mms events")
	if err != nil {
		return err
	}
	defer client.Close()
	nc := client.Conn

	msgs := make(chan *nats.Msg, 256)
	stop, err := fleet.SubscribeEvents(ctx, nc, since, nf.timeout, msgs)
	if errors.Is(err, fleet.ErrNoEventHistory) {
		return fmt.Errorf("%w; run without --since to follow live events", err)
	}
	if err != nil {
		return client.explain(err)
	}
	defer stop()
	a.log.Info("following machine events", "server", nc.ConnectedUrlRedacted(), "subjects", agent.EventsSubjects, "since", since)
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			a.printEvent(msg, filter, jsonOut)
		}
	}
}

// printEvent decodes one message and prints it if it passes the filter.
func (a *app) printEvent(msg *nats.Msg, filter fleet.EventFilter, jsonOut bool) {
	ev, err := fleet.DecodeEvent(msg.Data)
	switch {
	case errors.Is(err, fleet.ErrNotCloudEvent):
		a.log.Warn("skipping a message that is not a CloudEvent", "subject", msg.Subject, "error", err)
		return
	case err != nil:
		a.log.Warn("skipping an unreadable machine event", "subject", msg.Subject, "error", err)
		return
	}
	if !filter.Match(ev.Info) {
		return
	}
	if jsonOut {
		fmt.Fprintln(a.stdout, strings.TrimSpace(string(msg.Data)))
		return
	}
	fmt.Fprintln(a.stdout, ev.Line())
}
