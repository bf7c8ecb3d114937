package machine

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mms-io/mms/watchers"
	"go.yaml.in/yaml/v3"
)

// File is the name of a machine's definition inside its directory.
const File = "machine.yaml"

// MaxSize caps machine.yaml (256 KiB, far above any real machine):
// larger files are rejected unread, which also bounds YAML parsing time.
const MaxSize = 256 << 10

// ErrInvalid is wrapped by every error [Parse],
// [Load] and [Definition.Validate] return for bad machine.yaml
// content (as opposed to I/O errors).
var ErrInvalid = errors.New("invalid machine definition")

// Definition is a machine.yaml: Choria's autonomous-agent schema. It is a
// finite-state machine (states are inferred from InitialState and the
// transitions) plus the watchers that drive it.
type Definition struct {
	// Name identifies the machine on a node; see [Definition.Validate] for
	// the allowed characters.
	Name string `json:"name" yaml:"name"`
	// Version is the machine's version, carried in every event.
	Version string `json:"version" yaml:"version"`
	// InitialState is the state the machine starts in.
	InitialState string `json:"initial_state" yaml:"initial_state"`
	// SplayStart, in seconds, delays the start of the watchers by a random
	// time in [0, SplayStart).
	SplayStart int `json:"splay_start,omitempty" yaml:"splay_start,omitempty"`
	// Transitions are the machine's named events.
	Transitions []Transition `json:"transitions" yaml:"transitions"`
	// Watchers observe or enforce things and fire transitions.
	Watchers []WatcherDef `json:"watchers" yaml:"watchers"`

	// Warnings are what Parse accepted but an author should fix: a key
	// repeated with the same value, and properties in a form Choria
	// accepts but mms would not write (see [watchers.Decode]). Hosts log
	// them; `mms machine validate` prints them.
	Warnings []string `json:"-" yaml:"-"`

	// digest is the sha256 of the machine.yaml bytes Parse read; zero for
	// a definition built in code.
	digest [32]byte
}

// Digest returns the sha256 of the machine.yaml bytes the definition was
// parsed from, or zero for a definition built in code. A host that is
// handed a definition uses it instead of parsing machine.yaml again only
// when this matches the file on disk.
func (d *Definition) Digest() [32]byte { return d.digest }

// Transition moves the machine from any of From to Destination.
type Transition struct {
	// Name is what watchers' success_transition and fail_transition name.
	Name string `json:"name" yaml:"name"`
	// From lists the states the transition may fire in.
	From []string `json:"from" yaml:"from"`
	// Destination is the state the transition enters.
	Destination string `json:"destination" yaml:"destination"`
	// Description is informational only.
	Description string `json:"description,omitempty" yaml:"description,omitempty"`

	line int
}

// WatcherDef declares one watcher of a machine.
type WatcherDef struct {
	// Name is unique within the machine.
	Name string `json:"name" yaml:"name"`
	// Type is a registered watcher type (see [watchers.Lookup]).
	Type string `json:"type" yaml:"type"`
	// StateMatch lists the states the watcher runs in; empty means all.
	StateMatch []string `json:"state_match,omitempty" yaml:"state_match,omitempty"`
	// SuccessTransition is fired on a Success outcome.
	SuccessTransition string `json:"success_transition,omitempty" yaml:"success_transition,omitempty"`
	// FailTransition is fired on a Failure outcome or a check error.
	FailTransition string `json:"fail_transition,omitempty" yaml:"fail_transition,omitempty"`
	// Interval between periodic checks; zero means the type's default.
	Interval watchers.Duration `json:"interval,omitzero" yaml:"interval,omitempty"`
	// AnnounceInterval, when set (at least a minute), republishes the last
	// state this often.
	AnnounceInterval watchers.Duration `json:"announce_interval,omitzero" yaml:"announce_interval,omitempty"`
	// Properties is the type-specific configuration as a JSON object; YAML
	// properties are converted to JSON when parsed.
	Properties json.RawMessage `json:"properties,omitempty" yaml:"-"`
	// New is for compiled-in machines: it returns the watcher's
	// configuration built in Go, instead of decoding Properties (which
	// must then be empty), so settings such as the manager's trusted keys
	// reach the watcher as typed values rather than text. Each call must
	// return a new value of the registered type; its Validate still runs.
	New func() watchers.Watcher `json:"-" yaml:"-"`

	line      int
	propLines map[string]int // line of each top-level property key
}

// propertyWarnings returns what decoding w's properties accepted in a form
// mms would not write ([watchers.Decode]), each naming the watcher and the
// line of the property. A type that is not registered, or properties that
// do not decode, give none: Validate reports those.
func (w *WatcherDef) propertyWarnings() []string {
	if _, ok := watchers.Lookup(w.Type); !ok {
		return nil
	}
	_, warnings, err := watchers.Decode(w.Type, w.Properties)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(warnings))
	for _, warning := range warnings {
		key, _, _ := strings.Cut(warning, ":")
		key, _, _ = strings.Cut(key, ".")
		where := w.Where()
		if l, ok := w.propLines[key]; ok {
			where = fmt.Sprintf("line %d: watcher %q (%s)", l, w.Name, w.Type)
		}
		out = append(out, where+": properties: "+warning)
	}
	return out
}

// Where describes the watcher for messages: its line (when known), name
// and type, e.g. `line 12: watcher "check" (exec)`.
func (w *WatcherDef) Where() string {
	s := fmt.Sprintf("watcher %q (%s)", w.Name, w.Type)
	if w.line > 0 {
		s = fmt.Sprintf("line %d: %s", w.line, s)
	}
	return s
}

// yamlDefinition and friends mirror Definition for strict YAML decoding:
// properties stay a YAML node until converted to JSON, and intervals stay
// text so their errors can carry the watcher's line.
type yamlDefinition struct {
	Name         string           `yaml:"name"`
	Version      string           `yaml:"version"`
	InitialState string           `yaml:"initial_state"`
	SplayStart   int              `yaml:"splay_start"`
	Transitions  []yamlTransition `yaml:"transitions"`
	Watchers     []yamlWatcher    `yaml:"watchers"`
}

type yamlTransition struct {
	Name        string   `yaml:"name"`
	From        []string `yaml:"from"`
	Destination string   `yaml:"destination"`
	Description string   `yaml:"description"`
}

type yamlWatcher struct {
	Name              string    `yaml:"name"`
	Type              string    `yaml:"type"`
	StateMatch        []string  `yaml:"state_match"`
	SuccessTransition string    `yaml:"success_transition"`
	FailTransition    string    `yaml:"fail_transition"`
	Interval          string    `yaml:"interval"`
	AnnounceInterval  string    `yaml:"announce_interval"`
	Properties        yaml.Node `yaml:"properties"`
}

// yamlTypeNames turns the mirror types' names in decoder errors into words
// a machine.yaml author recognises.
var yamlTypeNames = strings.NewReplacer(
	"in type machine.yamlDefinition", "in machine",
	"in type machine.yamlTransition", "in transition",
	"in type machine.yamlWatcher", "in watcher",
	"machine.yamlDefinition", "machine",
	"machine.yamlTransition", "transition",
	"machine.yamlWatcher", "watcher",
)

// Parse decodes machine.yaml bytes strictly: unknown keys at any
// level are errors naming the key, its line and the field it most likely
// meant; a key repeated with another value is an error naming both lines,
// and one repeated with the same value is dropped with a warning
// ([Definition.Warnings]); each watcher's properties are converted from
// YAML to JSON. It checks structure only; call
// [Definition.Validate] to check meaning, watcher types and properties
// ([Load] and [MustParse] do both).
func Parse(data []byte) (*Definition, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes is larger than the %d byte limit", ErrInvalid, len(data), MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalid)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	warnings, err := dedupeKeys(&root)
	if err == nil {
		err = checkFields(&root)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var raw yamlDefinition
	if err := root.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, yamlTypeNames.Replace(err.Error()))
	}
	tLines, wLines := itemLines(&root)

	def := &Definition{
		Warnings:     warnings,
		digest:       sha256.Sum256(data),
		Name:         raw.Name,
		Version:      raw.Version,
		InitialState: raw.InitialState,
		SplayStart:   raw.SplayStart,
	}
	var errs []error
	for i, t := range raw.Transitions {
		def.Transitions = append(def.Transitions, Transition{
			Name: t.Name, From: t.From, Destination: t.Destination, Description: t.Description,
			line: lineAt(tLines, i),
		})
	}
	for i, rw := range raw.Watchers {
		w := WatcherDef{
			Name: rw.Name, Type: rw.Type, StateMatch: rw.StateMatch,
			SuccessTransition: rw.SuccessTransition, FailTransition: rw.FailTransition,
			line: lineAt(wLines, i),
		}
		var err error
		if w.Interval, err = watchers.ParseDuration(rw.Interval); err != nil {
			errs = append(errs, fmt.Errorf("%s: interval: %w", w.Where(), err))
		}
		if w.AnnounceInterval, err = watchers.ParseDuration(rw.AnnounceInterval); err != nil {
			errs = append(errs, fmt.Errorf("%s: announce_interval: %w", w.Where(), err))
		}
		if w.Properties, err = propertiesJSON(&rw.Properties); err != nil {
			errs = append(errs, fmt.Errorf("%s: properties: %w", w.Where(), err))
		}
		if rw.Properties.Kind == yaml.MappingNode {
			w.propLines = map[string]int{}
			for j := 0; j+1 < len(rw.Properties.Content); j += 2 {
				k := rw.Properties.Content[j]
				w.propLines[k.Value] = k.Line
			}
		}
		def.Warnings = append(def.Warnings, w.propertyWarnings()...)
		def.Watchers = append(def.Watchers, w)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return def, nil
}

// Load reads dir/machine.yaml (at most [MaxSize]
// bytes), parses it and validates it.
func Load(dir string) (*Definition, error) {
	path := filepath.Join(dir, File)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read machine definition: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read machine definition %s: %w", path, err)
	}
	def, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := def.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return def, nil
}

// MustParse parses and validates an embedded machine.yaml of a
// compiled-in machine and panics if it is invalid. Call it at init time,
// after the watcher types the machine uses are registered (import them).
func MustParse(data []byte) *Definition {
	def, err := Parse(data)
	if err == nil {
		err = def.Validate()
	}
	if err != nil {
		panic(fmt.Sprintf("machine: compiled-in machine definition: %v", err))
	}
	return def
}
