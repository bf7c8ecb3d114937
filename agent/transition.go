package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/internal/natsask"
	"github.com/mms-io/mms/spec"
)

// Transition requests: an operator fires a transition of a machine on the
// nodes whose identity matches (`mms machine transition`, Choria's
// `choria_util machine_transition`), for example the compiled-in manager's
// enter_maintenance and resume. A request is a JSON [TransitionRequest]
// published on [TransitionRequestSubject] with a reply subject; every
// matching node answers once with a [TransitionReply]. The request carries
// no signature: NATS permissions decide who may make one (`mms nats-config`
// lets the operator publish on the subject and nodes only subscribe to it
// and answer), so on a server without them anyone who may publish there
// can move machines between their states. A transition moves a machine
// only along its own machine.yaml; it never changes what a node runs.
const (
	// TransitionRequestSubject is the subject transition requests are
	// published on.
	TransitionRequestSubject = "mms.machine.transition"
	// MaxTransitionMessage caps a request's and a reply's size; larger
	// ones are ignored.
	MaxTransitionMessage = 16 << 10
	// maxTransitionName caps a transition name in a request.
	maxTransitionName = 256
)

// TransitionRequest is the payload of a transition request.
type TransitionRequest struct {
	// Identity, when set, is a regular expression (Go syntax) the node's
	// identity must match; empty asks every node.
	Identity string `json:"identity,omitempty"`
	// Machine is the name of the machine.
	Machine string `json:"machine"`
	// Transition is the transition to fire.
	Transition string `json:"transition"`
}

// TransitionOutcome is what a node did with a transition request.
type TransitionOutcome string

// Transition outcomes.
const (
	// Transitioned: the transition fired.
	Transitioned TransitionOutcome = "transitioned"
	// TransitionRefused: the machine runs but the transition cannot fire
	// in its current state (or the machine has no such transition).
	TransitionRefused TransitionOutcome = "refused"
	// NoSuchMachine: the node runs no machine of that name.
	NoSuchMachine TransitionOutcome = "no_machine"
)

// TransitionReply is a node's answer to a transition request.
type TransitionReply struct {
	// Identity is the node that answered.
	Identity string `json:"identity"`
	// Machine and Transition repeat the request.
	Machine    string `json:"machine"`
	Transition string `json:"transition"`
	// Outcome is what the node did.
	Outcome TransitionOutcome `json:"outcome"`
	// From is the state the machine left, or, when refused, the state it
	// is in.
	From string `json:"from,omitempty"`
	// To is the state the machine entered.
	To string `json:"to,omitempty"`
	// Error says why the transition did not fire.
	Error string `json:"error,omitempty"`
}

// ParseTransitionRequest decodes a request strictly (a JSON object with
// only the request's fields, at most [MaxTransitionMessage] bytes), checks
// the machine name and the transition, and returns the identity pattern
// compiled (nil: every node).
func ParseTransitionRequest(data []byte) (TransitionRequest, *regexp.Regexp, error) {
	var r TransitionRequest
	if err := decodeStrict(data, &r); err != nil {
		return r, nil, fmt.Errorf("transition request: %w", err)
	}
	if err := r.Check(); err != nil {
		return r, nil, fmt.Errorf("transition request: %w", err)
	}
	if r.Identity == "" {
		return r, nil, nil
	}
	re, err := regexp.Compile(r.Identity)
	if err != nil {
		return r, nil, fmt.Errorf("transition request: identity: %w", err)
	}
	return r, re, nil
}

// Check checks the request's fields.
func (r TransitionRequest) Check() error {
	var errs []error
	switch {
	case r.Machine == "":
		errs = append(errs, errors.New("machine: required"))
	default:
		if err := spec.CheckName(r.Machine); err != nil {
			errs = append(errs, fmt.Errorf("machine: %w", err))
		}
	}
	switch {
	case r.Transition == "":
		errs = append(errs, errors.New("transition: required"))
	case len(r.Transition) > maxTransitionName:
		errs = append(errs, fmt.Errorf("transition: longer than %d bytes", maxTransitionName))
	}
	if _, err := regexp.Compile(r.Identity); err != nil {
		errs = append(errs, fmt.Errorf("identity: %w", err))
	}
	return errors.Join(errs...)
}

// ParseTransitionReply decodes a node's reply: a JSON object of at most
// [MaxTransitionMessage] bytes with an identity and a known outcome.
// Unknown fields are ignored, so newer nodes may add some.
func ParseTransitionReply(data []byte) (TransitionReply, error) {
	var r TransitionReply
	if len(data) > MaxTransitionMessage {
		return r, fmt.Errorf("transition reply is %d bytes, over the %d limit", len(data), MaxTransitionMessage)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("transition reply: %w", err)
	}
	switch {
	case r.Identity == "":
		return r, errors.New("transition reply: no identity")
	case r.Outcome != Transitioned && r.Outcome != TransitionRefused && r.Outcome != NoSuchMachine:
		return r, fmt.Errorf("transition reply: unknown outcome %q", r.Outcome)
	}
	return r, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields,
// trailing data and more than MaxTransitionMessage bytes.
func decodeStrict(data []byte, v any) error {
	if len(data) > MaxTransitionMessage {
		return fmt.Errorf("%d bytes, over the %d limit", len(data), MaxTransitionMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// ServeTransitions answers the transition requests for this node (see
// [TransitionRequestSubject]) with the machines h runs, until ctx is done.
// It needs the host's NATS connection (HostConfig.Conn).
func (h *Host) ServeTransitions(ctx context.Context) error {
	nc := h.cfg.Conn
	if nc == nil {
		return errors.New("serve transition requests: the host has no NATS connection")
	}
	sub, err := nc.Subscribe(TransitionRequestSubject, func(m *nats.Msg) { h.answerTransition(ctx, m) })
	if err != nil {
		return fmt.Errorf("subscribe to transition requests on %s: %w", TransitionRequestSubject, err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// answerTransition handles one transition request.
func (h *Host) answerTransition(ctx context.Context, m *nats.Msg) {
	req, re, err := ParseTransitionRequest(m.Data)
	if err != nil {
		h.log.Warn("ignoring a malformed transition request", "error", err)
		return
	}
	if re != nil && !re.MatchString(h.cfg.Identity) {
		return
	}
	rep := h.fireRequested(ctx, req)
	h.log.Info("transition requested over NATS", "machine", req.Machine, "transition", req.Transition,
		"outcome", rep.Outcome, "from", rep.From, "to", rep.To, "error", rep.Error)
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(rep)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		h.log.Warn("answer a transition request", "error", err)
	}
}

// fireRequested fires the requested transition and says what happened.
func (h *Host) fireRequested(ctx context.Context, req TransitionRequest) TransitionReply {
	rep := TransitionReply{Identity: h.cfg.Identity, Machine: req.Machine, Transition: req.Transition}
	from, to, err := h.Fire(ctx, req.Machine, req.Transition)
	switch {
	case err == nil:
		rep.Outcome, rep.From, rep.To = Transitioned, from, to
	case errors.Is(err, ErrUnknownMachine):
		rep.Outcome = NoSuchMachine
		rep.Error = fmt.Sprintf("no machine %q runs on this node", req.Machine)
		if names := h.machineNames(); len(names) > 0 {
			rep.Error += fmt.Sprintf(" (it runs %q)", names)
		}
	default:
		rep.Outcome, rep.From, rep.Error = TransitionRefused, from, err.Error()
	}
	return rep
}

// machineNames returns the names of the running machines, sorted.
func (h *Host) machineNames() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.machines))
	for n := range h.machines {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RequestTransition publishes req and returns the replies that arrive
// within wait, in arrival order; replies that do not parse, or whose
// identity the request's pattern does not match, are dropped (a node
// speaks only for itself). It returns early once every identity in
// expect has answered.
func RequestTransition(ctx context.Context, nc *nats.Conn, req TransitionRequest, wait time.Duration, expect []string) ([]TransitionReply, error) {
	if err := req.Check(); err != nil {
		return nil, fmt.Errorf("transition request: %w", err)
	}
	re, _ := regexp.Compile(req.Identity) // Check compiled it
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("transition request: %w", err)
	}
	replies, err := natsask.Gather(ctx, nc, &nats.Msg{Subject: TransitionRequestSubject, Data: payload}, wait, expect, func(data []byte) (string, bool) {
		r, err := ParseTransitionReply(data)
		return r.Identity, err == nil && re.MatchString(r.Identity)
	})
	if err != nil {
		return nil, fmt.Errorf("transition request: %w", err)
	}
	out := make([]TransitionReply, len(replies))
	for i, data := range replies {
		out[i], _ = ParseTransitionReply(data) // Gather kept only replies that parse
	}
	return out, nil
}
