// Package natsask is the asking side of a request every node answers
// (mms machine transition, mms plan): publish once, gather the answers
// for a while, one per node. It needs nats.go alone, so the agent's
// packages may use it without the embedded server.
package natsask

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Gather publishes msg (its Reply is set to a fresh inbox) and collects
// the replies that arrive within wait, in arrival order: identify names
// the node a reply speaks for, and false drops it (it does not parse, or
// is not from a node asked); a second reply for one node is dropped too.
// It returns early once every identity in expect has answered, and with
// what it has when ctx's deadline passes; a cancelled ctx is an error.
// This is the operator's side of a request every node answers (mms
// machine transition, mms plan).
func Gather(ctx context.Context, nc *nats.Conn, msg *nats.Msg, wait time.Duration, expect []string, identify func(data []byte) (string, bool)) ([][]byte, error) {
	msg.Reply = nc.NewRespInbox()
	replies := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(msg.Reply, replies)
	if err != nil {
		return nil, fmt.Errorf("subscribe to answers: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishMsg(msg); err != nil {
		return nil, fmt.Errorf("publish on %s: %w", msg.Subject, err)
	}
	if err := nc.FlushTimeout(max(wait, time.Second)); err != nil {
		return nil, fmt.Errorf("publish on %s: %w", msg.Subject, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	pending := map[string]bool{}
	for _, id := range expect {
		pending[id] = true
	}
	var out [][]byte
	seen := map[string]bool{}
	for {
		select {
		case m := <-replies:
			id, ok := identify(m.Data)
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			delete(pending, id)
			out = append(out, m.Data)
			if len(expect) > 0 && len(pending) == 0 {
				return out, nil
			}
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return out, nil
			}
			return nil, ctx.Err()
		}
	}
}
