package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
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
