package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// Publisher sends a machine event somewhere. Publish must not block for
// long: it is called from watcher runners and transitions.
type Publisher interface {
	Publish(ctx context.Context, subject string, ev event.Event) error
}

// NATSPublisher publishes events as CloudEvents JSON (structured mode) with
// a plain core NATS publish. Nothing waits for an acknowledgement; the
// [EventsStream] stream, when it exists, captures them.
type NATSPublisher struct {
	Conn *nats.Conn
}

// Publish encodes ev and publishes it on subject.
func (p NATSPublisher) Publish(_ context.Context, subject string, ev event.Event) error {
	b, err := ev.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode %s event: %w", ev.Type(), err)
	}
	if err := p.Conn.Publish(subject, b); err != nil {
		return fmt.Errorf("publish %s event to %s: %w", ev.Type(), subject, err)
	}
	return nil
}

// notifier hands every event to the Publisher, if any, and logs it at
// debug level (events are the public stream, read with `mms events`; at
// info the log would repeat each of them, and `mms machine run` would print
// every event twice). A publish failure is logged, never returned: events
// are telemetry.
type notifier struct {
	pub Publisher
	log *slog.Logger
}

func (n *notifier) send(ctx context.Context, subject string, ev event.Event) {
	if n.log.Enabled(ctx, slog.LevelDebug) {
		attrs := []any{"subject", subject, "type", ev.Type(), "event_id", ev.ID()}
		if info, err := ParseEvent(ev); err == nil {
			attrs = append(attrs, "summary", info.Summary())
		}
		n.log.Debug("machine event", attrs...)
	}
	if n.pub == nil {
		return
	}
	if err := n.pub.Publish(ctx, subject, ev); err != nil {
		n.log.Warn("publish machine event failed", "subject", subject, "type", ev.Type(), "error", err)
	}
}

var _ Publisher = NATSPublisher{}
