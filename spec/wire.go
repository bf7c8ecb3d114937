package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// This file is the one description of the wire forms of a spec: the
// fields of a machine entry, which formats carry each, and the order they
// are written in. The decoders (decode.go) and the encoders below both
// read it, so a new field is added here, to [Machine] and to validation,
// and nowhere else.

// format is a set of inputs that may carry a machine field.
type format uint8

const (
	// formatV1 is a v1 (Choria) wire entry: Choria's field set.
	formatV1 format = 1 << iota
	// formatV2 is a v2 wire entry.
	formatV2
	// formatFile is the operator's machines file: every field; the
	// version policy is applied by validation.
	formatFile = formatV1 | formatV2
)

// machineField is one field of a machine entry.
type machineField struct {
	// key is the JSON name.
	key string
	// formats are the inputs that carry it.
	formats format
	// always is written even when empty (the required fields).
	always bool
	// ptr returns the *string, *int64, **Health or **Rollout of m that
	// holds it.
	ptr func(m *Machine) any
}

// machineFields are the fields of a machine entry in the order encoders
// write them (Choria's order for the fields v1 shares).
var machineFields = [...]machineField{
	{"name", formatFile, true, func(m *Machine) any { return &m.Name }},
	{"source", formatFile, true, func(m *Machine) any { return &m.Source }},
	{"checksum", formatFile, true, func(m *Machine) any { return &m.Checksum }},
	{"verify_checksum", formatFile, true, func(m *Machine) any { return &m.VerifyChecksum }},
	{"verify", formatFile, false, func(m *Machine) any { return &m.Verify }},
	{"match", formatFile, false, func(m *Machine) any { return &m.Match }},
	{"governor", formatFile, false, func(m *Machine) any { return &m.Governor }},
	{"size", formatV2, false, func(m *Machine) any { return &m.Size }},
	{"auth", formatV2, false, func(m *Machine) any { return &m.Auth }},
	{"username", formatV1, false, func(m *Machine) any { return &m.Username }},
	{"password", formatV1, false, func(m *Machine) any { return &m.Password }},
	{"health", formatV2, false, func(m *Machine) any { return &m.Health }},
	{"rollout", formatV2, false, func(m *Machine) any { return &m.Rollout }},
	{"hold", formatV2, false, func(m *Machine) any { return &m.Hold }},
}

// field returns a pointer to the field of m whose JSON name is key (a
// *string or *int64) and the formats that carry it, or nil for an unknown key.
func (m *Machine) field(key string) (any, format) {
	for _, f := range machineFields {
		if f.key == key {
			return f.ptr(m), f.formats
		}
	}
	return nil, 0
}

// fieldKeys returns the keys of the fields f carries.
func fieldKeys(f format) []string {
	var keys []string
	for _, fd := range machineFields {
		if fd.formats&f != 0 {
			keys = append(keys, fd.key)
		}
	}
	return keys
}

// The members of a v2 payload, in the order [EncodeV2] writes them.
const (
	keySerial   = "serial"
	keyIssuedAt = "issued_at"
	keyExpires  = "expires"
	keyReset    = "reset_history"
	keyMachines = "machines"
)

// EncodeV2 writes the payload of a v2 envelope for s: compact JSON, times
// in UTC, no HTML escaping (a matcher such as "a && b" keeps its bytes),
// the members in a fixed order. It refuses entries carrying v1-only
// fields (username, password: v2 names a node-local credential in auth).
// [DecodeV2] reads what it writes.
func EncodeV2(s *Spec) ([]byte, error) {
	if err := onlyFields(s.Machines, formatV2, "v1 only, name a node-local credential in auth"); err != nil {
		return nil, err
	}
	u := *s
	u.IssuedAt = u.IssuedAt.UTC()
	u.Expires = u.Expires.UTC()
	return u.encode(formatV2)
}

// EncodeV1 writes the machines of a v1 (Choria) envelope: a compact JSON
// list in Choria's field order. It refuses entries carrying v2-only fields
// (size, auth). [DecodeV1] reads what it writes.
func EncodeV1(ms []Machine) ([]byte, error) {
	if err := onlyFields(ms, formatV1, "v2 only, use v2"); err != nil {
		return nil, err
	}
	var w wireWriter
	w.machines(ms, formatV1)
	return w.bytes()
}

// MarshalJSON writes the spec as [EncodeV2] lays it out, with every field
// its entries carry (v1 credentials included), so a spec read from an
// operator's file marshals to what it was read from.
func (s Spec) MarshalJSON() ([]byte, error) { return s.encode(formatFile) }

// MarshalJSON writes the entry with every field it carries, in wire order.
func (m Machine) MarshalJSON() ([]byte, error) {
	var w wireWriter
	w.machine(&m, formatFile)
	return w.bytes()
}

// encode writes s with the machine fields of f.
func (s *Spec) encode(f format) ([]byte, error) {
	var w wireWriter
	w.buf.WriteString(`{"` + keySerial + `":`)
	w.buf.WriteString(strconv.FormatUint(s.Serial, 10))
	w.buf.WriteString(`,"` + keyIssuedAt + `":`)
	w.value(s.IssuedAt)
	if !s.Expires.IsZero() {
		w.buf.WriteString(`,"` + keyExpires + `":`)
		w.value(s.Expires)
	}
	if s.ResetHistory {
		w.buf.WriteString(`,"` + keyReset + `":true`)
	}
	w.buf.WriteString(`,"` + keyMachines + `":`)
	w.machines(s.Machines, f)
	w.buf.WriteByte('}')
	return w.bytes()
}

// onlyFields refuses the first entry of ms that sets fields f does not
// carry, naming them; why says what to do instead.
func onlyFields(ms []Machine, f format, why string) error {
	for i := range ms {
		var set []string
		for _, fd := range machineFields {
			if fd.formats&f == 0 && !isZero(fd.ptr(&ms[i])) {
				set = append(set, fd.key)
			}
		}
		switch len(set) {
		case 0:
			continue
		case 1:
			return fmt.Errorf("machines[%d] (%q): %s is %s", i, ms[i].Name, set[0], why)
		default:
			return fmt.Errorf("machines[%d] (%q): %s and %s are %s", i, ms[i].Name, strings.Join(set[:len(set)-1], ", "), set[len(set)-1], why)
		}
	}
	return nil
}

// isZero reports whether a field pointer holds its zero value.
func isZero(ptr any) bool {
	switch p := ptr.(type) {
	case *string:
		return *p == ""
	case *int64:
		return *p == 0
	case **Health:
		return *p == nil
	case **Rollout:
		return *p == nil
	}
	return false
}

// wireWriter builds compact JSON without HTML escaping.
type wireWriter struct {
	buf bytes.Buffer
	err error
}

func (w *wireWriter) machines(ms []Machine, f format) {
	w.buf.WriteByte('[')
	for i := range ms {
		if i > 0 {
			w.buf.WriteByte(',')
		}
		w.machine(&ms[i], f)
	}
	w.buf.WriteByte(']')
}

func (w *wireWriter) machine(m *Machine, f format) {
	w.buf.WriteByte('{')
	first := true
	for _, fd := range machineFields {
		p := fd.ptr(m)
		if fd.formats&f == 0 || (!fd.always && isZero(p)) {
			continue
		}
		if !first {
			w.buf.WriteByte(',')
		}
		first = false
		w.value(fd.key)
		w.buf.WriteByte(':')
		w.value(p)
	}
	w.buf.WriteByte('}')
}

// value writes v as JSON.
func (w *wireWriter) value(v any) {
	enc := json.NewEncoder(&w.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil && w.err == nil {
		w.err = err
	}
	w.buf.Truncate(w.buf.Len() - 1) // Encode's newline
}

func (w *wireWriter) bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	return w.buf.Bytes(), nil
}

// UnmarshalJSON reads an entry strictly, as the operator's machines file
// carries it: every field of every format, no unknown or repeated field.
func (m *Machine) UnmarshalJSON(b []byte) error {
	d := &jsonDoc{data: b}
	raw, base, err := d.top()
	if err != nil {
		return err
	}
	got, errs := d.machine(raw, base, formatFile)
	if len(errs) > 0 {
		setEntry(errs, entryName(-1, got.Name))
		return errors.Join(errs...)
	}
	*m = got
	return nil
}
