// Package expressionwatcher is the "expression" watcher: it evaluates expr
// (github.com/expr-lang/expr) boolean expressions over the machine data and
// the node's facts. When success_when becomes true the success_transition
// fires; when fail_when becomes true the fail_transition fires.
//
// Expressions see:
//
//	data          the machine data, a map (data.BUCKET_key.field)
//	facts         the node's facts, a map (facts.os.family)
//	identity      the node identity, a string
//	get_fact(p)   the fact at the dotted path p ("os.family", "disks.0.size"),
//	              nil when there is none
//
// Both expressions are compiled once, when the properties are validated, so
// a misspelt name or a non-boolean expression is rejected before the
// machine runs. success_when is evaluated first; fail_when only when
// success_when is false (or unset).
//
// Only edges count: the first check, or a check after the result changed,
// fires the transition and publishes an event; while the result stays the
// same nothing happens (Choria published every evaluation). Becoming
// neither (no_match) after a match is published without a transition. After
// the machine passed through a state the watcher does not run in, the next
// check counts as an edge again (Choria's behaviour). An evaluation error
// fails the check; the next successful evaluation is an edge.
package expressionwatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// MaxExpressionLength caps each expression: compiling a pathological one
// is slow.
const MaxExpressionLength = 4096

func init() {
	watchers.Register(watchers.Info{
		Type:            "expression",
		Version:         "v1",
		New:             func() watchers.Watcher { return new(Watcher) },
		DefaultInterval: watchers.Duration(10 * time.Second),
		MinInterval:     watchers.Duration(500 * time.Millisecond),
	})
}

// env is what an expression can name.
type env struct {
	Data     map[string]any        `expr:"data"`
	Facts    map[string]any        `expr:"facts"`
	Identity string                `expr:"identity"`
	GetFact  func(path string) any `expr:"get_fact"`
}

// Watcher is the expression watcher's configuration (its machine.yaml
// properties) and runtime state.
type Watcher struct {
	// SuccessWhen is a boolean expression; its becoming true fires the
	// success transition.
	SuccessWhen string `json:"success_when,omitempty"`
	// FailWhen is a boolean expression; its becoming true (while
	// SuccessWhen is false) fires the fail transition.
	FailWhen string `json:"fail_when,omitempty"`

	success, fail *vm.Program // compiled by Validate; nil when unset

	deps watchers.Deps
	prev result
}

// result is what an evaluation found (Choria's state names).
type result int

const (
	unknown result = iota
	successWhen
	failedWhen
	noMatch
	skipped
	failed
)

func (r result) String() string {
	return [...]string{"unknown", "success_when", "failed_when", "no_match", "skipped", "error"}[r]
}

// State is the type-specific part of the expression watcher's state event.
type State struct {
	// PreviousOutcome is "success_when", "failed_when", "no_match" or
	// "error".
	PreviousOutcome string `json:"previous_outcome"`
}

// Validate compiles the expressions.
func (w *Watcher) Validate() error {
	if strings.TrimSpace(w.SuccessWhen) == "" && strings.TrimSpace(w.FailWhen) == "" {
		return errors.New("success_when or fail_when: at least one is required")
	}
	var errs []error
	var err error
	if w.success, err = compile(w.SuccessWhen); err != nil {
		errs = append(errs, fmt.Errorf("success_when: %w", err))
	}
	if w.fail, err = compile(w.FailWhen); err != nil {
		errs = append(errs, fmt.Errorf("fail_when: %w", err))
	}
	return errors.Join(errs...)
}

// compile compiles a boolean expression against env; "" gives nil.
func compile(src string) (*vm.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	if n := utf8.RuneCountInString(src); n > MaxExpressionLength {
		return nil, fmt.Errorf("%d characters, the most is %d", n, MaxExpressionLength)
	}
	return expr.Compile(src, expr.Env(env{}), expr.AsBool())
}

// Provision keeps the machine's dependencies.
func (w *Watcher) Provision(d watchers.Deps) error {
	w.deps = d
	return nil
}

// StateChanged makes the next check an edge after the watcher was outside
// its states.
func (w *Watcher) StateChanged(active bool) {
	if !active {
		w.prev = skipped
	}
}

// Check evaluates the expressions and reports an edge.
func (w *Watcher) Check(context.Context) (watchers.Result, error) {
	cur, err := w.evaluate()
	prev := w.prev
	w.prev = cur
	res := watchers.Result{Outcome: watchers.Unchanged, State: State{PreviousOutcome: cur.String()}}
	switch {
	case err != nil:
		res.Outcome = watchers.Failure
		return res, err
	case cur == prev:
	case cur == successWhen:
		res.Outcome = watchers.Success
	case cur == failedWhen:
		res.Outcome = watchers.Failure
	case prev != unknown && prev != skipped: // a match ended
		res.Outcome = watchers.Report
	}
	return res, nil
}

// evaluate runs success_when, then fail_when.
func (w *Watcher) evaluate() (result, error) {
	e := env{Identity: w.deps.Identity, Data: map[string]any{}, Facts: map[string]any{}}
	if w.deps.Data != nil {
		e.Data = w.deps.Data.All()
	}
	if w.deps.Facts != nil {
		if f := w.deps.Facts(); f != nil {
			e.Facts = f
		}
	}
	e.GetFact = func(path string) any { return spec.LookupFact(e.Facts, path) }
	for _, c := range []struct {
		name string
		p    *vm.Program
		r    result
	}{{"success_when", w.success, successWhen}, {"fail_when", w.fail, failedWhen}} {
		if c.p == nil {
			continue
		}
		v, err := expr.Run(c.p, e)
		if err != nil {
			return failed, fmt.Errorf("evaluate %s: %w", c.name, err)
		}
		if v.(bool) {
			return c.r, nil
		}
	}
	return noMatch, nil
}

var (
	_ watchers.Watcher       = (*Watcher)(nil)
	_ watchers.Validator     = (*Watcher)(nil)
	_ watchers.Provisioner   = (*Watcher)(nil)
	_ watchers.StateObserver = (*Watcher)(nil)
)
