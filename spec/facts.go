package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParseFacts parses a node's facts: a JSON object or a YAML mapping (told
// apart by the first non-space byte: "{" is JSON). The result holds only
// JSON-like values — map[string]any, []any, string, bool, nil and numbers
// (float64 from JSON; int, uint64 or float64 from YAML) — so matchers and
// JSON encoding treat both the same. YAML keys that are not strings are
// converted to their text (1 → "1"), YAML timestamps to RFC 3339 strings and
// binary values to strings. Empty input (or a YAML null) is an empty map.
func ParseFacts(data []byte) (map[string]any, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return map[string]any{}, nil
	}
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(data))
		var facts map[string]any
		if err := dec.Decode(&facts); err != nil {
			return nil, fmt.Errorf("parse facts: %w", jsonError(data, err))
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("parse facts: unexpected data after the JSON object")
		}
		return facts, nil
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse facts: %w", yamlError(err))
	}
	if doc == nil {
		return map[string]any{}, nil
	}
	v, err := plainYAML(doc)
	if err != nil {
		return nil, fmt.Errorf("parse facts: %w", err)
	}
	facts, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("parse facts: want a JSON object or YAML mapping, got %s", kindOf(v))
	}
	return facts, nil
}

// plainYAML converts a value decoded by yaml.v3 into JSON-like values.
func plainYAML(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := plainYAML(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := plainYAML(e)
			if err != nil {
				return nil, err
			}
			key, err := plainKey(k)
			if err != nil {
				return nil, err
			}
			out[key] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := plainYAML(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case []byte:
		return string(x), nil
	default:
		return x, nil
	}
}

// plainKey turns a scalar YAML key into its text.
func plainKey(k any) (string, error) {
	switch x := k.(type) {
	case string:
		return x, nil
	case nil:
		return "null", nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	default:
		return "", fmt.Errorf("mapping key of type %s is not supported", kindOf(k))
	}
}

// LookupFact returns the value at a dotted path in facts ("os.family";
// numeric segments index lists, "disks.0.size"), or nil if any segment is
// missing, out of range or crosses a value that is not a map or list. Keys
// that contain dots cannot be addressed. An empty path is nil.
func LookupFact(facts map[string]any, path string) any {
	if path == "" {
		return nil
	}
	var cur any = facts
	for seg := range strings.SplitSeq(path, ".") {
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[seg]
			if !ok {
				return nil
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			cur = x[i]
		default:
			return nil
		}
	}
	return cur
}

// kindOf names the JSON kind of a decoded value for error messages.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	default:
		return fmt.Sprintf("%T", v)
	}
}
