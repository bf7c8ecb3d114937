package kvwatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// parseValue turns a KV value into machine data. Ignoring surrounding white
// space, a value starting with { or [ is decoded as JSON (into a
// map[string]any or a []any); anything else is the raw string, untrimmed. A
// value that starts like JSON but does not decode is also returned as the
// raw string, together with the decoding error.
//
// The result is already in the form the machine data store keeps values in
// (a JSON round trip changes nothing), so it compares equal to what the
// store returns for it.
func parseValue(b []byte) (any, error) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return jsonString(b), nil
	}
	var v any
	if err := json.Unmarshal(t, &v); err != nil {
		return jsonString(b), fmt.Errorf("value looks like JSON but does not decode: %w", err)
	}
	return v, nil
}

// jsonString returns b as a string the way a JSON round trip leaves it:
// every byte that is not part of valid UTF-8 becomes U+FFFD.
func jsonString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var s strings.Builder
	s.Grow(len(b) + 8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			s.WriteRune(utf8.RuneError)
		} else {
			s.Write(b[:size])
		}
		b = b[size:]
	}
	return s.String()
}
