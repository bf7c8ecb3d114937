package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/termtext"
	"github.com/mms-io/mms/watchers"
)

// Machine events as people read them: `mms events` prints these lines and
// the fleet page shows the same ones. What an event of a watcher type means
// is the type's own knowledge (its registered [watchers.Info.Describe]);
// this file only decodes, filters, dispatches and follows.

// TransitionType is the type an [EventFilter] names to keep only
// transition events.
const TransitionType = "transition"

// EventFilter keeps the events a person asked for; empty fields keep
// every event.
type EventFilter struct {
	// Machine keeps only the events of this machine.
	Machine string
	// Identity keeps only the events of the nodes whose identity matches
	// this regular expression (Go syntax, unanchored: "web1" keeps web10's
	// too, "^web1$" only web1's), as `mms reconcile` and `mms machine
	// transition` choose nodes.
	Identity string
	// Type keeps only the state events of watchers of this type ("exec",
	// "host", …), or only transitions with [TransitionType].
	Type string

	// identity is Identity compiled by [EventFilter.Compile].
	identity *regexp.Regexp
}

// Compile checks the filter and returns it with Identity compiled once,
// for matching many events. Match works without it, compiling Identity
// on every call (and keeping nothing when it is not a regular expression).
func (f EventFilter) Compile() (EventFilter, error) {
	if f.Identity == "" {
		f.identity = nil
		return f, nil
	}
	re, err := regexp.Compile(f.Identity)
	if err != nil {
		return f, fmt.Errorf("identity %q: %w", f.Identity, err)
	}
	f.identity = re
	return f, nil
}

// Match reports whether the filter keeps the event.
func (f EventFilter) Match(info agent.EventInfo) bool {
	if f.Machine != "" && info.Machine != f.Machine {
		return false
	}
	if f.Identity != "" {
		re := f.identity
		if re == nil {
			var err error
			if re, err = regexp.Compile(f.Identity); err != nil {
				return false
			}
		}
		if !re.MatchString(info.Identity) {
			return false
		}
	}
	if f.Type != "" {
		if info.Transition {
			return f.Type == TransitionType
		}
		return info.WatcherType == f.Type
	}
	return true
}

// Errors of [DecodeEvent]: anyone who may publish on the events subjects
// can send anything there.
var (
	// ErrNotCloudEvent: the message is not a CloudEvent in JSON.
	ErrNotCloudEvent = errors.New("not a CloudEvent")
	// ErrNotMachineEvent: a CloudEvent, but not a readable machine event.
	ErrNotMachineEvent = errors.New("not a readable machine event")
)

// ErrNoEventHistory: the server has no agent.EventsStream stream to
// replay events from (agents with the embedded server create it).
var ErrNoEventHistory = errors.New("the " + agent.EventsStream + " stream does not exist on this server, so there is no history to replay (the agent creates it)")

// Event is one machine event: the CloudEvent and its summary.
type Event struct {
	// CloudEvent is the event as published.
	CloudEvent event.Event
	// Info is what agent.ParseEvent reads of it.
	Info agent.EventInfo
}

// DecodeEvent decodes a message from the events subjects. Its errors wrap
// [ErrNotCloudEvent] or [ErrNotMachineEvent].
func DecodeEvent(data []byte) (Event, error) {
	ev := event.New()
	if err := json.Unmarshal(data, &ev); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrNotCloudEvent, err)
	}
	return ReadEvent(ev)
}

// ReadEvent reads a machine CloudEvent, ours or Choria's. Its errors wrap
// [ErrNotMachineEvent].
func ReadEvent(ev event.Event) (Event, error) {
	info, err := agent.ParseEvent(ev)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrNotMachineEvent, err)
	}
	return Event{CloudEvent: ev, Info: info}, nil
}

// Why says why a state event happened, in the words of its watcher type
// (the exit code and first stderr line of a failed exec, a spec's outcome,
// a reload's versions, a kv or file watcher's reason); "" for a transition
// or when the type has nothing to add. The text is not escaped.
func (e Event) Why() string {
	if e.Info.Transition {
		return ""
	}
	data := e.CloudEvent.Data()
	if e.Info.WatcherType == agent.HostWatcherType {
		return agent.DescribeHostEvent(data)
	}
	if t, ok := watchers.Lookup(e.Info.WatcherType); ok && t.Describe != nil {
		return t.Describe(data)
	}
	var f struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(data, &f) != nil {
		return ""
	}
	return f.Reason
}

// What says what happened, its error and why ([Event.Why]): the part of
// [Event.Line] after the time, identity and machine. The text is not
// escaped.
func (e Event) What() string {
	what := e.Info.Summary()
	if why := e.Why(); why != "" {
		sep := ": "
		if e.Info.Error != "" || e.Info.TransitionError != "" {
			sep = "; "
		}
		what += sep + why
	}
	return what
}

// Line is the event as one line for people: time, identity, machine, what
// happened, its error, and why ([Event.What]). Everything in it comes from
// the network, so it is escaped: a hostile event cannot drive a terminal.
func (e Event) Line() string {
	// Info.String is the time, identity, machine and Info.Summary.
	return termtext.Escape(strings.TrimSuffix(e.Info.String(), e.Info.Summary()) + e.What())
}

// SubscribeEvents feeds msgs with the machine events on nc until ctx is
// done or stop is called: new events only when since is zero, else first
// those of the last since kept by the agent.EventsStream stream, then new
// ones, in order. timeout bounds the requests that set the subscription
// up.
func SubscribeEvents(ctx context.Context, nc *nats.Conn, since, timeout time.Duration, msgs chan *nats.Msg) (stop func(), err error) {
	if since > 0 {
		return replayEvents(ctx, nc, since, timeout, msgs)
	}
	sub, err := nc.ChanSubscribe(agent.EventsSubjects, msgs)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", agent.EventsSubjects, err)
	}
	if err := nc.FlushTimeout(timeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", agent.EventsSubjects, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// replayEvents feeds msgs from an ordered consumer on the events stream
// starting since ago: the history first, then new events.
func replayEvents(ctx context.Context, nc *nats.Conn, since, timeout time.Duration, msgs chan *nats.Msg) (stop func(), err error) {
	setup, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("replay events: %w", err)
	}
	var stream jetstream.Stream
	err = natsbox.RetryJS(setup, func(ctx context.Context) error { // a leader may be being elected
		stream, err = js.Stream(ctx, agent.EventsStream)
		return err
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("replay events: %w", ErrNoEventHistory)
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
