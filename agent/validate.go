package agent

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/mms-io/mms/watchers"
)

// NamePattern is what machine names must match: an ASCII letter or digit,
// then letters, digits, '_' or '-', at most 64 characters. It accepts every
// name Choria's schema allows (which wants a leading letter) and every
// spec entry name (which may start with a digit), and it is safe as a
// directory name.
var NamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)

// WatcherNamePattern is what watcher names must match: like [NamePattern]
// but '.' is allowed too and up to 128 characters.
var WatcherNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// MinAnnounceInterval is the smallest announce_interval a watcher may set.
const MinAnnounceInterval = time.Minute

// MaxSplayStart caps splay_start (one day, in seconds).
const MaxSplayStart = 86400

// Validate checks the definition as a whole and returns every problem
// found, joined, each wrapping [ErrInvalidDefinition]: required fields,
// the name's characters, at least one transition and one watcher,
// duplicate transition or watcher names, unknown states and transitions
// referenced by watchers, unknown watcher types, intervals below the type's
// minimum, announce intervals below a minute, and each watcher's
// properties (built with [watchers.Build]: strict decoding and the type's
// own Validate). It does no I/O.
func (d *Definition) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	switch {
	case d.Name == "":
		add("name is required")
	case !NamePattern.MatchString(d.Name):
		add("name %q must match %s", d.Name, NamePattern)
	}
	if d.Version == "" {
		add("version is required")
	}
	if d.InitialState == "" {
		add("initial_state is required")
	}
	if d.SplayStart < 0 || d.SplayStart > MaxSplayStart {
		add("splay_start %d must be between 0 and %d seconds", d.SplayStart, MaxSplayStart)
	}
	if len(d.Transitions) == 0 {
		add("at least one transition is required")
	}
	if len(d.Watchers) == 0 {
		add("at least one watcher is required")
	}

	states := d.States()
	transitions := map[string]bool{}
	for i := range d.Transitions {
		t := &d.Transitions[i]
		where := fmt.Sprintf("transition %d", i+1)
		if t.Name != "" {
			where = fmt.Sprintf("transition %q", t.Name)
		}
		if t.line > 0 {
			where = fmt.Sprintf("line %d: %s", t.line, where)
		}
		switch {
		case t.Name == "":
			add("%s: name is required", where)
		case transitions[t.Name]:
			add("%s: duplicate transition name", where)
		}
		transitions[t.Name] = true
		if len(t.From) == 0 {
			add("%s: from needs at least one state", where)
		}
		if slices.Contains(t.From, "") {
			add("%s: from contains an empty state", where)
		}
		if t.Destination == "" {
			add("%s: destination is required", where)
		}
	}

	names := map[string]bool{}
	for i := range d.Watchers {
		w := &d.Watchers[i]
		where := w.where()
		switch {
		case w.Name == "":
			add("%s: name is required", where)
		case !WatcherNamePattern.MatchString(w.Name):
			add("%s: name must match %s", where, WatcherNamePattern)
		case names[w.Name]:
			add("%s: duplicate watcher name", where)
		}
		names[w.Name] = true
		for _, s := range w.StateMatch {
			if !slices.Contains(states, s) {
				add("%s: state_match: unknown state %q (known: %v)", where, s, states)
			}
		}
		if w.SuccessTransition != "" && !transitions[w.SuccessTransition] {
			add("%s: success_transition: unknown transition %q", where, w.SuccessTransition)
		}
		if w.FailTransition != "" && !transitions[w.FailTransition] {
			add("%s: fail_transition: unknown transition %q", where, w.FailTransition)
		}
		if w.AnnounceInterval != 0 && w.AnnounceInterval.Std() < MinAnnounceInterval {
			add("%s: announce_interval %v is below the minimum of %v", where, w.AnnounceInterval, MinAnnounceInterval)
		}
		if w.Type == "" {
			add("%s: type is required", where)
			continue
		}
		info, ok := watchers.Lookup(w.Type)
		if !ok {
			add("%s: %w", where, watchers.UnknownType(w.Type))
			continue
		}
		if w.Interval != 0 && info.MinInterval != 0 && w.Interval < info.MinInterval {
			add("%s: interval %v is below the type's minimum of %v", where, w.Interval, info.MinInterval)
		}
		if _, err := watchers.Build(w.Type, w.Properties); err != nil {
			add("%s: %w", where, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w %q: %w", ErrInvalidDefinition, d.Name, errors.Join(errs...))
}

// States returns the machine's known states: the initial state, then every
// from and destination state in order of first appearance.
func (d *Definition) States() []string {
	var out []string
	addState := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	addState(d.InitialState)
	for _, t := range d.Transitions {
		for _, f := range t.From {
			addState(f)
		}
		addState(t.Destination)
	}
	return out
}
