package kvwatcher

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var valueTests = []struct {
	name  string
	in    string
	want  any
	error string // substring of the parse error; "" for none
}{
	{name: "object", in: `{"a":1,"b":[true,null,"x"]}`, want: map[string]any{"a": 1.0, "b": []any{true, nil, "x"}}},
	{name: "object with newline", in: "{\"a\":\"b\"}\n", want: map[string]any{"a": "b"}},
	{name: "padded array", in: " \t\n[1, 2]\r\n ", want: []any{1.0, 2.0}},
	{name: "empty object", in: `{}`, want: map[string]any{}},
	{name: "empty array", in: `[]`, want: []any{}},
	{name: "plain string kept untrimmed", in: "v1.2.3\n", want: "v1.2.3\n"},
	{name: "number is a string", in: `42`, want: "42"},
	{name: "quoted JSON string is a string", in: `"x"`, want: `"x"`},
	{name: "empty", in: ``, want: ""},
	{name: "white space only", in: " \n", want: " \n"},
	{name: "invalid object kept raw", in: "{\"a\":\n", want: "{\"a\":\n", error: "value looks like JSON but does not decode"},
	{name: "trailing garbage", in: `{"a":1} x`, want: `{"a":1} x`, error: "invalid character 'x' after top-level value"},
	{name: "log line", in: `[warning] disk full`, want: `[warning] disk full`, error: "value looks like JSON but does not decode"},
	{name: "huge number", in: `[1e400]`, want: `[1e400]`, error: "value looks like JSON but does not decode"},
	{name: "invalid UTF-8 string", in: "a\xffb\xfe\xfd", want: "a\uFFFDb\uFFFD\uFFFD"},
	{name: "invalid UTF-8 in JSON", in: "{\"k\":\"\xff\"}", want: map[string]any{"k": "\uFFFD"}},
	{name: "duplicate keys, last wins", in: `{"a":1,"a":2}`, want: map[string]any{"a": 2.0}},
}

func TestParseValue(t *testing.T) {
	for _, tt := range valueTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseValue([]byte(tt.in))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseValue(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if e := errString(err); (tt.error == "") != (e == "") || !strings.Contains(e, tt.error) {
				t.Errorf("parseValue(%q) error = %q, want one containing %q", tt.in, e, tt.error)
			}
		})
	}
}

func TestParseValueDeepNesting(t *testing.T) {
	for _, tt := range []struct {
		name  string
		depth int
		err   bool
	}{
		{name: "below the decoder's limit", depth: 9999},
		{name: "above the decoder's limit", depth: 20000, err: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Repeat("[", tt.depth) + strings.Repeat("]", tt.depth)
			got, err := parseValue([]byte(in))
			if (err != nil) != tt.err {
				t.Fatalf("parseValue(%d nested arrays) error = %v, want error %v", tt.depth, err, tt.err)
			}
			if tt.err && got != in {
				t.Errorf("parseValue(%d nested arrays) = %.20v…, want the raw string", tt.depth, got)
			}
			if stored := roundTrip(t, got); !reflect.DeepEqual(got, stored) {
				t.Errorf("parseValue(%d nested arrays) changes in a JSON round trip", tt.depth)
			}
		})
	}
}

// roundTrip returns v after the JSON round trip the machine data store
// applies to every value it keeps.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%v) = %v", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("json.Unmarshal(%s) = %v", b, err)
	}
	return out
}

// FuzzParseValue checks parseValue on any bytes: no panic; the result is
// unchanged by the data store's JSON round trip (so a stored value compares
// equal to a new read of the same bytes); an object or array only comes
// from a value starting with { or [; and a string is the input itself when
// the input is valid UTF-8.
func FuzzParseValue(f *testing.F) {
	for _, tt := range valueTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := parseValue(in)
		// reflect.DeepEqual, not cmp: cmp.Diff takes minutes on a few
		// hundred nested arrays (found by this fuzz target).
		if stored := roundTrip(t, v); !reflect.DeepEqual(v, stored) {
			t.Fatalf("parseValue(%q) = %#v, changed to %#v by a JSON round trip", in, v, stored)
		}
		first := byte(0)
		if t := bytes.TrimSpace(in); len(t) > 0 {
			first = t[0]
		}
		switch v := v.(type) {
		case map[string]any:
			if first != '{' || err != nil {
				t.Fatalf("parseValue(%q) = object, %v; want an object only from {", in, err)
			}
		case []any:
			if first != '[' || err != nil {
				t.Fatalf("parseValue(%q) = array, %v; want an array only from [", in, err)
			}
		case string:
			if err != nil && first != '{' && first != '[' {
				t.Fatalf("parseValue(%q) error %v for a value that does not look like JSON", in, err)
			}
			if utf8.Valid(in) && v != string(in) {
				t.Fatalf("parseValue(%q) = %q, want the input unchanged", in, v)
			}
		default:
			t.Fatalf("parseValue(%q) = %T, want an object, an array or a string", in, v)
		}
	})
}
