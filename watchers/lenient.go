package watchers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Normalizer is implemented by watchers that accept a form of their
// properties that Choria accepts but mms would not write: a property left
// out where Choria fills in a default, a property Choria ignores in that
// combination, an older spelling. Normalize runs after decoding and before
// Validate; it rewrites the configuration into the canonical form and
// returns one warning for each rewrite, naming the canonical form (for
// example `timer: not set; Choria's default of 1s applies: write timer: 1s`).
// It must be pure, like Validate.
type Normalizer interface {
	Normalize() []string
}

// Decode creates a watcher of type typ from its JSON properties the way
// [Build] does, without Validate: strict decoding (unknown fields are
// errors) after the weak typing Choria's decoder allows, then the type's
// [Normalizer]. It returns a warning for each value it accepted in a form
// mms would not write:
//
//   - a string where a boolean belongs ("true", "t", "1", "false", "f",
//     "0" in any case Go's strconv.ParseBool takes), as Choria's own tests
//     write gather_initial_state: "t";
//   - a string where a whole number belongs ("30");
//   - what the type's Normalize rewrote.
//
// Each warning starts with the property's path (`registration.port: …`).
// `mms machine validate` prints them and the agent logs them when it loads
// the machine.
func Decode(typ string, properties json.RawMessage) (Watcher, []string, error) {
	info, ok := Lookup(typ)
	if !ok {
		return nil, nil, UnknownType(typ)
	}
	w := info.New()
	trimmed := bytes.TrimSpace(properties)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return w, normalize(w), nil
	}
	var warnings []string
	if t := reflect.TypeOf(w); t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		trimmed = weaken(trimmed, t.Elem(), "", &warnings)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(w); err != nil {
		return nil, nil, fmt.Errorf("properties: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("properties: trailing data after the object")
	}
	return w, append(warnings, normalize(w)...), nil
}

// normalize runs w's Normalize, if it has one.
func normalize(w Watcher) []string {
	if n, ok := w.(Normalizer); ok {
		return n.Normalize()
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// weaken returns the JSON object raw with the values that Choria's weak
// decoding would convert for struct type t already converted: strings
// into booleans and whole numbers, in t's fields and in the fields of its
// struct-valued fields. Anything it does not understand (not an object, a
// string that does not parse) is left as it is, for the strict decoder to
// report. path prefixes the property names in warnings.
func weaken(raw []byte, t reflect.Type, path string, warnings *[]string) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return raw
	}
	changed := false
	for _, key := range slices.Sorted(maps.Keys(obj)) { // warnings in a stable order
		val := obj[key]
		f, ok := fieldFor(t, key)
		if !ok {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if reflect.PointerTo(ft).Implements(unmarshalerType) {
			continue // its own decoding (durations take strings already)
		}
		name := path + key
		var s string
		isString := json.Unmarshal(val, &s) == nil && len(bytes.TrimSpace(val)) > 0 && bytes.TrimSpace(val)[0] == '"'
		var repl string
		switch k := ft.Kind(); {
		case k == reflect.Bool && isString:
			if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
				repl = strconv.FormatBool(b)
			}
		case k >= reflect.Int && k <= reflect.Int64 && isString:
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				repl = strconv.FormatInt(n, 10)
			}
		case k >= reflect.Uint && k <= reflect.Uint64 && isString:
			if n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64); err == nil {
				repl = strconv.FormatUint(n, 10)
			}
		case k == reflect.Struct:
			if w := weaken(val, ft, name+".", warnings); !bytes.Equal(w, val) {
				obj[key], changed = w, true
			}
			continue
		}
		if repl == "" {
			continue
		}
		*warnings = append(*warnings, fmt.Sprintf("%s: %s is a string, read as %s: write %s: %s", name, strconv.Quote(s), repl, key, repl))
		obj[key], changed = json.RawMessage(repl), true
	}
	if !changed {
		return raw
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return raw
	}
	return out
}

// fieldFor returns the field of struct type t that encoding/json decodes
// key into: the exported field whose JSON name is key, else the first one
// whose name matches key ignoring case (as encoding/json does).
func fieldFor(t reflect.Type, key string) (reflect.StructField, bool) {
	var fold reflect.StructField
	found := false
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case name == "":
			name = f.Name
		}
		if name == key {
			return f, true
		}
		if !found && strings.EqualFold(name, key) {
			fold, found = f, true
		}
	}
	return fold, found
}
