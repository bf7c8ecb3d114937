package machine

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mms-io/mms/internal/suggest"
	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// WatcherNamePattern is what watcher names must match: an ASCII letter or
// digit, then letters, digits, '_', '.' or '-', up to 128 characters.
var WatcherNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// MinAnnounceInterval is the smallest announce_interval a watcher may set.
const MinAnnounceInterval = time.Minute

// MaxSplayStart caps splay_start (one day, in seconds).
const MaxSplayStart = 86400

// Validate checks the definition as a whole and returns every problem
// found, joined, each wrapping [ErrInvalid]: required fields,
// the name's characters, at least one transition and one watcher,
// duplicate transition or watcher names, unknown states and transitions
// referenced by watchers, unknown watcher types, intervals below the type's
// minimum, announce intervals below a minute, and each watcher's
// properties (built with [watchers.Build]: strict decoding and the type's
// own Validate). It does no I/O.
func (d *Definition) Validate() error {
	_, err := d.BuildWatchers()
	return err
}

// BuildWatchers checks the definition as [Definition.Validate] does and
// returns a new, unprovisioned watcher for each of d.Watchers, in order:
// the runtime builds a machine's watchers with it, so validating and
// building are one pass.
func (d *Definition) BuildWatchers() ([]watchers.Watcher, error) {
	var errs []error
	var built []watchers.Watcher
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	switch {
	case d.Name == "":
		add("name is required")
	default:
		if err := spec.CheckName(d.Name); err != nil {
			add("name: %w", err)
		}
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
		where := w.Where()
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
		bw, err := w.build()
		if err != nil {
			add("%s", w.propertyError(info, err))
		}
		built = append(built, bw)
	}
	if len(errs) == 0 {
		return built, nil
	}
	return nil, fmt.Errorf("%w %q: %w", ErrInvalid, d.Name, errors.Join(errs...))
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

// build returns a new watcher for w: from New, validated, when a
// compiled-in machine set it, else from its properties ([watchers.Build]).
func (w *WatcherDef) build() (watchers.Watcher, error) {
	if w.New == nil {
		return watchers.Build(w.Type, w.Properties)
	}
	if len(w.Properties) > 0 {
		return nil, errors.New("properties: a watcher built in Go (New) takes no properties")
	}
	bw := w.New()
	if v, ok := bw.(watchers.Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("properties: %w", err)
		}
	}
	return bw, nil
}

// propertyError words an error from building w for a machine.yaml author:
// an unknown or mistyped property is named with its own line (not the
// watcher's), the property it most likely meant, and no trace of the JSON
// that properties are decoded as.
func (w *WatcherDef) propertyError(info watchers.Info, err error) error {
	where := w.Where()
	at := func(key string) {
		if l, ok := w.propLines[key]; ok {
			where = fmt.Sprintf("line %d: watcher %q (%s)", l, w.Name, w.Type)
		}
	}
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &ute) && ute.Field != "":
		key, _, _ := strings.Cut(ute.Field, ".")
		at(key)
		return fmt.Errorf("%s: properties: %s: want %s, got %s", where, ute.Field, kindWord(ute.Type), valueWord(ute.Value))
	case strings.Contains(err.Error(), `json: unknown field "`):
		_, rest, _ := strings.Cut(err.Error(), `json: unknown field "`)
		key, _, _ := strings.Cut(rest, `"`)
		at(key)
		return fmt.Errorf("%s: properties: unknown field %q%s", where, key, suggest.Hint(key, propertyNames(info)))
	}
	return fmt.Errorf("%s: %s", where, strings.ReplaceAll(err.Error(), "json: ", ""))
}

// propertyNames returns the JSON names of a watcher type's properties.
func propertyNames(info watchers.Info) []string {
	if info.New == nil {
		return nil
	}
	t := reflect.TypeOf(info.New())
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return fieldNames(t, "json")
}

// valueWord names the kind of a JSON value as encoding/json reports it.
func valueWord(v string) string {
	switch v {
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	case "bool":
		return "true or false"
	case "string", "number":
		return "a " + v
	}
	return v
}

// kindWord names a Go type the way a YAML author thinks of it.
func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}
