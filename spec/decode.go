package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/mms-io/mms/internal/suggest"
)

// DecodeV2 decodes the payload of a v2 envelope,
// {"serial":N,"issued_at":"RFC3339","expires":"RFC3339","reset_history":true,"machines":[…]},
// strictly: unknown or repeated fields anywhere, values of the wrong type
// and a missing machines list are errors. Entries may carry name, source,
// checksum, verify_checksum, verify, match, governor, size, auth, health,
// rollout and hold;
// username and password are v1-only, so here they are unknown fields. It
// reports every problem at once and does not validate meaning: call
// [Spec.Validate] next. [EncodeV2] writes what it decodes (see wire.go).
//
// Call it only on bytes whose signature has been verified.
func DecodeV2(payload []byte) (*Spec, error) {
	if s, err := decodeV2Fast(payload); err == nil {
		return s, nil
	}
	return decodeV2Full(payload)
}

// decodeV2Full is DecodeV2's full decoder: slower than decodeV2Fast, it
// names every problem of a payload.
func decodeV2Full(payload []byte) (*Spec, error) {
	d := &jsonDoc{data: payload}
	raw, base, err := d.top()
	if err != nil {
		return nil, err
	}
	if raw[0] != '{' {
		return nil, &FieldError{Err: fmt.Errorf("want a JSON object, got %s", describeJSON(raw))}
	}
	var (
		s        Spec
		errs     []error
		seen     = make(map[string]bool, 4)
		machines bool
	)
	err = members(raw, base, func(key string, _ int64, val json.RawMessage, valOff int64) {
		add := func(err error) {
			if err != nil {
				errs = append(errs, &FieldError{Field: key, Err: err})
			}
		}
		if seen[key] {
			errs = append(errs, &FieldError{Err: fmt.Errorf("repeated field %s", quote(key))})
			return
		}
		seen[key] = true
		switch key {
		case keySerial:
			n, err := decodeSerial(val)
			s.Serial = n
			add(err)
		case keyIssuedAt:
			t, err := decodeTime(val)
			s.IssuedAt = t
			add(err)
		case keyExpires:
			t, err := decodeTime(val)
			s.Expires = t
			add(err)
		case keyReset:
			b, err := decodeBool(val)
			s.ResetHistory = b
			add(err)
		case keyMachines:
			machines = true
			if val[0] != '[' {
				add(fmt.Errorf("want a list of machines, got %s", describeJSON(val)))
				return
			}
			var probs []error
			s.Machines, probs = d.list(val, valOff, formatV2)
			errs = append(errs, probs...)
		default:
			errs = append(errs, &FieldError{Err: fmt.Errorf("unknown field %s%s", quote(key), suggest.Hint(key, []string{keySerial, keyIssuedAt, keyExpires, keyMachines}))})
		}
	})
	if err != nil {
		errs = append(errs, &FieldError{Err: err})
	}
	if !machines {
		errs = append(errs, &FieldError{Field: keyMachines, Err: errRequired})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &s, nil
}

// DecodeV1 decodes the machines of a v1 (Choria) envelope: the raw JSON
// array that the v1 signature covers. Entries may carry only Choria's
// fields (name, source, username, password, verify, verify_checksum,
// checksum, match, governor); anything else, a repeated field or a value of
// the wrong type is an error. It reports every problem at once and does not
// validate meaning: call [ValidateMachines] with Legacy set next.
//
// Call it only on bytes whose signature has been verified.
func DecodeV1(machines []byte) ([]Machine, error) {
	d := &jsonDoc{data: machines}
	raw, base, err := d.top()
	if err != nil {
		return nil, err
	}
	if raw[0] != '[' {
		return nil, &FieldError{Err: fmt.Errorf("want a JSON list of machines, got %s", describeJSON(raw))}
	}
	ms, errs := d.list(raw, base, formatV1)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ms, nil
}

// errWantSerial and errWantBool say what a serial and a boolean must be.
func errWantSerial(val []byte) error {
	return fmt.Errorf("want a whole number from 1 to 18446744073709551615, got %s", describeJSON(val))
}

func errWantBool(val []byte) error {
	return fmt.Errorf("want true or false, got %s", describeJSON(val))
}

// decodeTime decodes an RFC 3339 time; null is the zero time.
func decodeTime(val json.RawMessage) (time.Time, error) {
	var s string
	if string(val) == "null" {
		return time.Time{}, nil
	}
	if err := json.Unmarshal(val, &s); err == nil {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 time such as 2025-01-31T12:00:00Z, got %s", describeJSON(val))
}

// jsonDoc is a JSON document being decoded, for positions in errors.
type jsonDoc struct {
	data []byte
	// lines holds the offset of every line start; nil means errors report
	// no lines (signed payloads, usually one long line).
	lines []int64
}

// withLines indexes the line starts of d so errors report lines.
func (d *jsonDoc) withLines() *jsonDoc {
	d.lines = []int64{0}
	for i, c := range d.data {
		if c == '\n' {
			d.lines = append(d.lines, int64(i)+1)
		}
	}
	return d
}

// line returns the 1-based line of offset off, or 0 without a line index.
func (d *jsonDoc) line(off int64) int {
	if d.lines == nil {
		return 0
	}
	return sort.Search(len(d.lines), func(i int) bool { return d.lines[i] > off })
}

// top decodes the one JSON value the document holds and returns it with
// its offset. Syntax errors give a line and column.
func (d *jsonDoc) top() (json.RawMessage, int64, error) {
	dec := json.NewDecoder(bytes.NewReader(d.data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if err == io.EOF {
			return nil, 0, &FieldError{Err: errors.New("empty input")}
		}
		return nil, 0, &FieldError{Err: jsonError(d.data, err)}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		line, col := position(d.data, skipSpace(d.data, end, false))
		return nil, 0, &FieldError{Err: fmt.Errorf("invalid JSON at line %d, column %d: unexpected data after the end of the value", line, col)}
	}
	return raw, skipSpace(d.data, 0, false), nil
}

// list decodes a JSON list of machine entries (raw, at offset base); it
// names the entries in its errors.
func (d *jsonDoc) list(raw json.RawMessage, base int64, allowed format) ([]Machine, []error) {
	ms := []Machine{}
	var errs []error
	err := elements(raw, base, func(i int, val json.RawMessage, off int64) {
		m, probs := d.machine(val, off, allowed)
		setEntry(probs, entryName(i, m.Name))
		ms = append(ms, m)
		errs = append(errs, probs...)
	})
	if err != nil {
		errs = append(errs, &FieldError{Line: d.line(base), Err: err})
	}
	return ms, errs
}

// machine decodes one entry (raw, at offset base) with the fields allowed
// carries. Its errors have no Entry: the caller names the entry.
func (d *jsonDoc) machine(raw json.RawMessage, base int64, allowed format) (Machine, []error) {
	var m Machine
	if raw[0] != '{' {
		return m, []error{&FieldError{Line: d.line(base), Err: fmt.Errorf("want an object, got %s", describeJSON(raw))}}
	}
	var errs []error
	seen := make(map[string]bool, 8)
	err := members(raw, base, func(key string, keyOff int64, val json.RawMessage, _ int64) {
		line := d.line(keyOff)
		ptr, f := m.field(key)
		switch {
		case seen[key]:
			errs = append(errs, &FieldError{Line: line, Err: fmt.Errorf("repeated field %s", quote(key))})
			return
		case ptr == nil || f&allowed == 0:
			errs = append(errs, &FieldError{Line: line, Err: fmt.Errorf("unknown field %s%s", quote(key), suggest.Hint(key, fieldKeys(allowed)))})
		default:
			if err := decodeField(ptr, val); err != nil {
				errs = append(errs, &FieldError{Line: line, Field: key, Err: err})
			}
		}
		seen[key] = true
	})
	if err != nil {
		errs = append(errs, &FieldError{Line: d.line(base), Err: err})
	}
	return m, errs
}

// decodeField decodes one JSON value into a *string or *int64; null leaves
// the zero value.
func decodeField(ptr any, val json.RawMessage) error {
	if string(val) == "null" {
		return nil
	}
	switch p := ptr.(type) {
	case *string:
		if val[0] != '"' || json.Unmarshal(val, p) != nil {
			return fmt.Errorf("want a string, got %s", describeJSON(val))
		}
	case *int64:
		if json.Unmarshal(val, p) != nil {
			return fmt.Errorf("want an integer, got %s", describeJSON(val))
		}
	case **Health:
		*p = new(Health)
		err := decodeObject(*p, val)
		if len((*p).FailStates) == 0 {
			(*p).FailStates = nil // omitted when empty, so "[]" and none are one value
		}
		return err
	case **Rollout:
		*p = new(Rollout)
		return decodeObject(*p, val)
	}
	return nil
}

// members calls fn for every member of the JSON object raw (valid JSON at
// offset base), in order, with the offsets of its key and value.
func members(raw json.RawMessage, base int64, fn func(key string, keyOff int64, val json.RawMessage, valOff int64)) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("want an object, got %s", describeJSON(raw))
	}
	for dec.More() {
		keyOff := skipSpace(raw, dec.InputOffset(), true)
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("want a field name, got %v", tok)
		}
		valOff := skipSpace(raw, dec.InputOffset(), true)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return err
		}
		fn(key, base+keyOff, val, base+valOff)
	}
	return nil
}

// elements calls fn for every element of the JSON list raw (valid JSON at
// offset base), in order, with its offset.
func elements(raw json.RawMessage, base int64, fn func(i int, val json.RawMessage, off int64)) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return fmt.Errorf("want a list, got %s", describeJSON(raw))
	}
	for i := 0; dec.More(); i++ {
		off := skipSpace(raw, dec.InputOffset(), true)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return err
		}
		fn(i, val, base+off)
	}
	return nil
}

// skipSpace returns the offset of the first byte at or after off that is
// not JSON white space (nor, if seps, a ',' or ':').
func skipSpace(data []byte, off int64, seps bool) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\r', '\n':
		case ',', ':':
			if !seps {
				return off
			}
		default:
			return off
		}
		off++
	}
	return off
}

// describeJSON describes a JSON value for an error message: its kind, or
// for scalars the (cut) value itself.
func describeJSON(val json.RawMessage) string {
	if len(val) == 0 {
		return "nothing"
	}
	switch val[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		var s string
		if json.Unmarshal(val, &s) == nil {
			return quote(s)
		}
	}
	if len(val) > maxQuoted {
		return string(val[:maxQuoted]) + "..."
	}
	return string(val)
}
