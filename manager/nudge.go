package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The reconcile nudge: `mms reconcile` publishes on NudgeSubject, every
// agent's machines watcher subscribes to it. A nudge carries no signature
// and needs none: it can only make a node check its spec now (what a
// periodic check would do a little later), never change what it runs.
const (
	// NudgeSubject is the subject reconcile nudges are published on.
	NudgeSubject = "mms.reconcile"
	// MaxNudgeSize caps a nudge's payload; a larger one is ignored.
	MaxNudgeSize = 4 << 10
	// NudgeMinInterval is the least time between two checks nudges
	// trigger on one node: a flood of nudges costs at most one check a
	// second.
	NudgeMinInterval = time.Second
)

// NudgeLogInterval is how often at most a node logs the nudges it
// ignores (see [IgnoredNudges]).
const NudgeLogInterval = time.Minute

// ErrNotNudge is wrapped by [CheckNudgeMessage]'s error for a message on
// NudgeSubject that no `mms reconcile` sent.
var ErrNotNudge = errors.New("not a reconcile nudge")

// CheckNudgeMessage returns why a message that arrived on NudgeSubject
// with this reply subject and these headers is not a nudge `mms reconcile`
// sent, which carries no headers and at most an inbox to reply to. A
// JetStream consumer delivers with an acknowledgement reply ($JS.ACK.…),
// flow control ($JS.FC.…) and idle heartbeats (a Status header): a node
// that may create consumers can name NudgeSubject as a consumer's deliver
// subject (nats-server does not check it against the node's publish
// permissions) and turn its own status writes into nudges for the whole
// fleet. Such messages are refused before they are parsed.
func CheckNudgeMessage(reply string, header map[string][]string) error {
	switch {
	case strings.HasPrefix(reply, "$JS."):
		return fmt.Errorf("%w: a JetStream consumer delivered it (reply subject %.40q): a consumer whose deliver subject is %s", ErrNotNudge, reply, NudgeSubject)
	case len(header) > 0:
		return fmt.Errorf("%w: it has headers, which nudges never carry (a JetStream heartbeat or delivery?)", ErrNotNudge)
	}
	return nil
}

// IgnoredNudges counts the nudges a node ignores and says when to log
// them, so that a flood of bad nudges costs a line a minute, not a line a
// nudge: the first ignored nudge after a quiet [NudgeLogInterval] is
// logged at once; the others are counted, and [IgnoredNudges.Summary]
// reports them once the interval has passed. The zero value is ready.
type IgnoredNudges struct {
	mu      sync.Mutex
	lastLog time.Time // of the last line, of either kind
	count   int       // ignored since the last line
	last    error     // why the last one was ignored
}

// Ignore records a nudge ignored at now for why; it reports whether to
// log it now.
func (n *IgnoredNudges) Ignore(now time.Time, why error) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if now.Sub(n.lastLog) >= NudgeLogInterval && n.count == 0 {
		n.lastLog = now
		return true
	}
	n.count++
	n.last = why
	return false
}

// Summary returns how many ignored nudges went unlogged, and the last
// reason, once NudgeLogInterval has passed since the last line (then it
// counts a line); else 0.
func (n *IgnoredNudges) Summary(now time.Time) (count int, last error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.count == 0 || now.Sub(n.lastLog) < NudgeLogInterval {
		return 0, nil
	}
	count, last = n.count, n.last
	n.count, n.last, n.lastLog = 0, nil, now
	return count, last
}

// Nudge is the payload of a reconcile nudge (JSON). An empty payload nudges
// every node.
type Nudge struct {
	// Identity, when set, is a regular expression (Go syntax) the node's
	// identity must match.
	Identity string `json:"identity,omitempty"`
}

// NudgeReply is what a nudged node answers when the nudge asks for a reply.
type NudgeReply struct {
	Identity string `json:"identity"`
}

// ParseNudge decodes a nudge payload strictly: a JSON object with at most
// the identity field, or nothing at all. It returns the identity pattern
// compiled (nil: every node).
func ParseNudge(data []byte) (*regexp.Regexp, error) {
	if len(data) > MaxNudgeSize {
		return nil, fmt.Errorf("nudge is %d bytes, over the %d limit", len(data), MaxNudgeSize)
	}
	var n Nudge
	if len(data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&n); err != nil {
			return nil, fmt.Errorf("nudge: %w", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, errors.New("nudge: data after the JSON object")
		}
	}
	if n.Identity == "" {
		return nil, nil
	}
	re, err := regexp.Compile(n.Identity)
	if err != nil {
		return nil, fmt.Errorf("nudge: identity: %w", err)
	}
	return re, nil
}
