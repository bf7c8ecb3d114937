package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/mms-io/mms/internal/suggest"
	"go.yaml.in/yaml/v3"
)

// ParseMachines parses the operator's machines file: a JSON array (Choria's
// machines.json) or a YAML list, told apart by content (a first non-space
// byte of "[" or "{" is JSON). Every field of either spec version is accepted here;
// which ones a version allows is checked by [ValidateMachines] /
// [Spec.Validate] with the matching [ValidateOptions].
//
// Unknown and repeated fields, entries that are not objects and values of
// the wrong type are errors naming the entry, the line and the field, e.g.
// `machine[1] "web": line 7: unknown field "chekcsum"`. Every problem is
// reported at once; each wraps [ErrInvalid]. YAML merge keys (<<) are not
// supported. An empty list is valid (it asks for no machines); an empty file
// is not.
func ParseMachines(data []byte) ([]Machine, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &FieldError{Err: errors.New("empty machines file: write [] for an empty list")}
	}
	if trimmed[0] == '[' || trimmed[0] == '{' {
		return parseJSON(data)
	}
	return parseYAML(data)
}

// parseJSON parses a JSON machines file.
func parseJSON(data []byte) ([]Machine, error) {
	d := (&jsonDoc{data: data}).withLines()
	raw, base, err := d.top()
	if err != nil {
		return nil, err
	}
	if raw[0] != '[' {
		return nil, &FieldError{Line: d.line(base), Err: fmt.Errorf("want a JSON list of machines, got %s", describeJSON(raw))}
	}
	ms, errs := d.list(raw, base, formatFile)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ms, nil
}

// maxAliasHops bounds alias chains (an alias of an alias …).
const maxAliasHops = 64

// parseYAML parses a YAML machines file.
func parseYAML(data []byte) ([]Machine, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Err: errors.New("empty machines file: write [] for an empty list")}
		}
		return nil, &FieldError{Err: yamlError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		return nil, &FieldError{Line: line, Err: errors.New("more than one YAML document; want a single list of machines")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{Err: errors.New("want a YAML list of machines")}
	}
	root := deref(doc.Content[0])
	if root.Kind != yaml.SequenceNode {
		return nil, &FieldError{Line: root.Line, Err: fmt.Errorf("want a list of machines, got %s", describeYAML(root))}
	}
	ms := []Machine{}
	var errs []error
	for i, item := range root.Content {
		m, probs := yamlMachine(deref(item))
		setEntry(probs, entryName(i, m.Name))
		ms = append(ms, m)
		errs = append(errs, probs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ms, nil
}

// yamlMachine decodes one YAML entry. Its errors have no Entry.
func yamlMachine(n *yaml.Node) (Machine, []error) {
	var m Machine
	if n.Kind != yaml.MappingNode {
		return m, []error{&FieldError{Line: n.Line, Err: fmt.Errorf("want a mapping, got %s", describeYAML(n))}}
	}
	var errs []error
	seen := make(map[string]bool, 8)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, &FieldError{Line: k.Line, Err: fmt.Errorf("want a field name, got %s", describeYAML(k))})
			continue
		}
		key := k.Value
		ptr, _ := m.field(key)
		switch {
		case k.Tag == "!!merge":
			errs = append(errs, &FieldError{Line: k.Line, Err: errors.New("merge keys (<<) are not supported; write every field out")})
		case seen[key]:
			errs = append(errs, &FieldError{Line: k.Line, Err: fmt.Errorf("repeated field %s", quote(key))})
		case ptr == nil:
			errs = append(errs, &FieldError{Line: k.Line, Err: fmt.Errorf("unknown field %s%s", quote(key), suggest.Hint(key, fieldKeys(formatFile)))})
		default:
			if err := yamlField(ptr, v); err != nil {
				errs = append(errs, &FieldError{Line: k.Line, Field: key, Err: err})
			}
		}
		seen[key] = true
	}
	return m, errs
}

// yamlField decodes a YAML value into a *string or *int64. A string field
// takes any scalar's text as written; null leaves the zero value.
func yamlField(ptr any, v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	switch p := ptr.(type) {
	case *string:
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("want a string, got %s", describeYAML(v))
		}
		*p = v.Value
	case *int64:
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(p) != nil {
			return fmt.Errorf("want an integer, got %s", describeYAML(v))
		}
	case **Health, **Rollout:
		if v.Kind != yaml.MappingNode {
			return fmt.Errorf("want a mapping, got %s", describeYAML(v))
		}
		var obj map[string]any
		if err := v.Decode(&obj); err != nil {
			return err
		}
		js, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("want plain values: %w", err)
		}
		return decodeField(ptr, js)
	}
	return nil
}

// deref follows alias nodes to what they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < maxAliasHops; i++ {
		n = n.Alias
	}
	return n
}

// describeYAML describes a YAML node for an error message.
func describeYAML(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!str":
			return quote(n.Value)
		}
		if len(n.Value) > maxQuoted {
			return n.Value[:maxQuoted] + "..."
		}
		return n.Value
	}
	return "an alias"
}
