package machine

import (
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// propertiesJSON converts a YAML properties node to a JSON object.
func propertiesJSON(n *yaml.Node) (json.RawMessage, error) {
	if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: must be a mapping", n.Line)
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("convert to JSON: %w", err)
	}
	return b, nil
}

// jsonable rewrites YAML-decoded values into ones encoding/json accepts:
// maps with non-string keys become string-keyed (or fail).
func jsonable(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			c, err := jsonable(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			t[k] = c
		}
		return t, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v: keys must be strings", k)
			}
			c, err := jsonable(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ks, err)
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		for i, e := range t {
			c, err := jsonable(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			t[i] = c
		}
		return t, nil
	default:
		return v, nil
	}
}

// itemLines returns the line of each transitions and watchers list item,
// for error messages. It tolerates any document shape.
func itemLines(root *yaml.Node) (transitions, watcherLines []int) {
	if len(root.Content) == 0 {
		return nil, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		var dst *[]int
		switch doc.Content[i].Value {
		case "transitions":
			dst = &transitions
		case "watchers":
			dst = &watcherLines
		default:
			continue
		}
		if seq := doc.Content[i+1]; seq.Kind == yaml.SequenceNode {
			for _, item := range seq.Content {
				*dst = append(*dst, item.Line)
			}
		}
	}
	return transitions, watcherLines
}

func lineAt(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}
