package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/nodestatus"
)

// eventFilter keeps the events the user asked for.
type eventFilter struct {
	machine, typ, identity string
}

func (f eventFilter) match(info agent.EventInfo) bool {
	if f.machine != "" && info.Machine != f.machine {
		return false
	}
	if f.identity != "" && info.Identity != f.identity {
		return false
	}
	if f.typ != "" {
		if info.Transition {
			return f.typ == "transition"
		}
		return info.WatcherType == f.typ
	}
	return true
}

func (a *app) newEventsCmd() *cobra.Command {
	var (
		nf      natsFlags
		jsonOut bool
		since   time.Duration
		filter  eventFilter
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print machine events (transitions and watcher states) as they happen",
		Long: `Events subscribes to ` + agent.EventsSubjects + ` and prints one line per event: time,
identity, machine and what happened. --json prints the CloudEvent JSON
instead. --since replays recent events from the ` + agent.EventsStream + ` stream first
(then follows new ones); it needs that stream to exist.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.followEvents(cmd.Context(), nf, since, filter, jsonOut)
		},
	}
	nf.registerClient(cmd, cmd.Flags())
	cmd.Flags().Lookup("timeout").Usage = "give up connecting, and setting up --since, after this long"
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print each event as CloudEvent JSON")
	cmd.Flags().DurationVar(&since, "since", 0, "replay events newer than `DURATION` from the "+agent.EventsStream+" stream")
	cmd.Flags().StringVar(&filter.machine, "machine", "", "only events of machine `NAME`")
	cmd.Flags().StringVar(&filter.typ, "type", "", "only watcher states of `TYPE` (exec, kv, host, …) or \"transition\"")
	cmd.Flags().StringVar(&filter.identity, "identity", "", "only events from node `IDENTITY`")
	return cmd
}

// followEvents prints events until ctx is done. It connects with the
// shared NATS flags (so --context, --creds and TLS work as for the other
// commands) and says on stderr once it follows, so a person knows it is
// waiting for events rather than stuck.
func (a *app) followEvents(ctx context.Context, nf natsFlags, since time.Duration, filter eventFilter, jsonOut bool) error {
	client, err := nf.connect(ctx, a, "mms events")
	if err != nil {
		return err
	}
	defer client.Close()
	nc := client.Conn

	msgs := make(chan *nats.Msg, 256)
	if since > 0 {
		stop, err := replay(ctx, nc, nf.timeout, since, msgs)
		if err != nil {
			return client.explain(err)
		}
		defer stop()
	} else {
		sub, err := nc.ChanSubscribe(agent.EventsSubjects, msgs)
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", agent.EventsSubjects, err)
		}
		defer sub.Unsubscribe()
		if err := nc.FlushTimeout(nf.timeout); err != nil {
			return client.explain(fmt.Errorf("subscribe to %s: %w", agent.EventsSubjects, err))
		}
	}
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
func (a *app) printEvent(msg *nats.Msg, filter eventFilter, jsonOut bool) {
	ev := event.New()
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		a.log.Warn("skipping a message that is not a CloudEvent", "subject", msg.Subject, "error", err)
		return
	}
	info, err := agent.ParseEvent(ev)
	if err != nil {
		a.log.Warn("skipping an unreadable machine event", "subject", msg.Subject, "error", err)
		return
	}
	if !filter.match(info) {
		return
	}
	if jsonOut {
		fmt.Fprintln(a.stdout, strings.TrimSpace(string(msg.Data)))
		return
	}
	fmt.Fprintln(a.stdout, eventLine(ev, info))
}

// eventLine is one event as a line for people: the agent's summary (time,
// identity, machine, what happened, the error) and why, from the fields
// the event's watcher type adds. Everything in it comes from the network,
// so it is escaped: a hostile event cannot drive the terminal.
func eventLine(ev event.Event, info agent.EventInfo) string {
	line := info.String()
	if why := eventReason(ev, info); why != "" {
		sep := ": "
		if info.Error != "" || info.TransitionError != "" {
			sep = "; "
		}
		line += sep + why
	}
	return termtext.Escape(line)
}

// eventFields are the fields of watcher state events that say why, by
// watcher type: exec (exit_code, stderr), machines (serial, format,
// rejected, reason, results), host (version, previous_version), kv and
// file (reason), archive (tampered).
type eventFields struct {
	ExitCode        *int                    `json:"exit_code"`
	Stderr          string                  `json:"stderr"`
	Serial          uint64                  `json:"serial"`
	Digest          string                  `json:"digest"`
	Format          string                  `json:"format"`
	Rejected        string                  `json:"rejected"`
	Reason          string                  `json:"reason"`
	Results         []manager.MachineResult `json:"results"`
	Version         string                  `json:"version"`
	PreviousVersion string                  `json:"previous_version"`
	Tampered        string                  `json:"tampered"`
}

// eventReason says why a state event happened, from the fields its watcher
// type adds, or "" when there is nothing to add to the summary.
func eventReason(ev event.Event, info agent.EventInfo) string {
	if info.Transition {
		return ""
	}
	var f eventFields
	if err := ev.DataAs(&f); err != nil {
		return "" // ParseEvent read the same data; a field of another type is not ours
	}
	switch info.WatcherType {
	case "exec":
		if info.Outcome == "success" || f.ExitCode == nil {
			return ""
		}
		var parts []string
		if *f.ExitCode >= 0 {
			parts = append(parts, fmt.Sprintf("exit %d", *f.ExitCode))
		}
		if line := firstLine(f.Stderr); line != "" {
			parts = append(parts, line)
		}
		return strings.Join(parts, ": ")
	case "machines":
		return machinesReason(f)
	case agent.HostWatcherType:
		switch {
		case f.PreviousVersion != "" && f.PreviousVersion != f.Version:
			return f.PreviousVersion + " → " + f.Version
		case f.Version != "":
			return f.Version
		}
		return ""
	case "archive":
		if f.Tampered != "" {
			return "tampered: " + f.Tampered
		}
		return ""
	}
	return f.Reason
}

// machinesReason sums up a machines watcher event: the spec and, when it
// was not applied, why; else what happened to each entry that did not
// stay unchanged (skips with their matcher, failures with their error).
func machinesReason(f eventFields) string {
	label := fmt.Sprintf("serial %d", f.Serial)
	switch {
	case f.Format == "v1":
		label = "v1 " + shortHex(f.Digest)
	case f.Serial == 0 && f.Rejected != "":
		label = "spec"
	}
	if f.Rejected != "" {
		outcome := nodestatus.SeenOutcome(manager.Rejection(f.Rejected), f.Format)
		if f.Reason == "" {
			return label + " " + outcome
		}
		return label + " " + outcome + ": " + f.Reason
	}
	var parts []string
	for _, r := range f.Results {
		switch r.Outcome {
		case manager.EntryUnchanged:
			continue
		case manager.EntrySkipped:
			if r.Match != "" {
				parts = append(parts, fmt.Sprintf("%s skipped (match %s)", r.Name, r.Match))
				continue
			}
		}
		part := r.Name + " " + string(r.Outcome)
		if r.Reason != "" && r.Outcome != manager.EntrySkipped {
			part += " (" + r.Reason + ")"
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return label
	}
	return label + ": " + strings.Join(parts, ", ")
}

// firstLine is the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}

// replay feeds msgs from an ordered consumer on the events stream starting
// since ago: the history first, then new events, until ctx is done or stop
// is called. timeout bounds the requests that set the consumer up.
func replay(ctx context.Context, nc *nats.Conn, timeout, since time.Duration, msgs chan<- *nats.Msg) (stop func(), err error) {
	setup, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("replay events: %w", err)
	}
	var stream jetstream.Stream
	err = retryJS(setup, func(ctx context.Context) error { // a leader may be being elected
		stream, err = js.Stream(ctx, agent.EventsStream)
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("replay events: the %s stream does not exist on this server, so there is no history to replay (the agent creates it); run without --since to follow live events", agent.EventsStream)
	}
	if err != nil {
		return nil, fmt.Errorf("replay events: look up stream %s: %w", agent.EventsStream, err)
	}
	start := time.Now().Add(-since)
	cons, err := stream.OrderedConsumer(setup, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{agent.EventsSubjects},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("replay events: create consumer on %s: %w", agent.EventsStream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- &nats.Msg{Subject: m.Subject(), Data: m.Data()}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, fmt.Errorf("replay events: consume %s: %w", agent.EventsStream, err)
	}
	return cc.Stop, nil
}
