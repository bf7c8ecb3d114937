package machine

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mms-io/mms/internal/suggest"
)

// dedupeKeys walks every mapping under n. A key that repeats an earlier
// key of the same mapping with an equal value is dropped, with a warning
// naming both lines (Choria's own examples repeat state_match this way, and
// users copy them); a key repeated with another value is an error naming
// both lines, since no one can tell which was meant.
func dedupeKeys(n *yaml.Node) (warnings []string, err error) {
	var errs []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			seen := map[string]int{} // key → index of its key node
			kept := n.Content[:0:0]
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if j, dup := seen[k.Value]; dup && k.Kind == yaml.ScalarNode {
					first := n.Content[j]
					if sameNode(n.Content[j+1], v) {
						warnings = append(warnings, fmt.Sprintf("line %d: %q repeats line %d with the same value; the copy is ignored", k.Line, k.Value, first.Line))
						continue
					}
					errs = append(errs, fmt.Sprintf("line %d: %q is already set at line %d, to another value: keep one", k.Line, k.Value, first.Line))
					continue
				}
				if k.Kind == yaml.ScalarNode {
					seen[k.Value] = i
				}
				kept = append(kept, k, v)
			}
			n.Content = kept
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	if len(errs) > 0 {
		return warnings, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return warnings, nil
}

// sameNode reports whether two YAML nodes hold the same value (layout,
// comments and positions aside).
func sameNode(a, b *yaml.Node) bool {
	for a.Kind == yaml.AliasNode && a.Alias != nil {
		a = a.Alias
	}
	for b.Kind == yaml.AliasNode && b.Alias != nil {
		b = b.Alias
	}
	if a.Kind != b.Kind || a.Value != b.Value || a.ShortTag() != b.ShortTag() || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !sameNode(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}

// checkFields reports keys of the machine, its transitions and its watchers
// that the schema does not have, each with its line and a hint at the field
// it most likely meant. Watcher properties are the watcher type's business.
func checkFields(doc *yaml.Node) error {
	var errs []string
	check := func(n *yaml.Node, typ reflect.Type, where string) {
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the wrong shape
		}
		known := fieldNames(typ, "yaml")
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !slices.Contains(known, k.Value) {
				errs = append(errs, fmt.Sprintf("line %d: field %s not found in %s%s", k.Line, k.Value, where, suggest.Hint(k.Value, known)))
			}
		}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	check(doc, reflect.TypeFor[yamlDefinition](), "machine")
	if doc.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(doc.Content); i += 2 {
			var typ reflect.Type
			var where string
			switch doc.Content[i].Value {
			case "transitions":
				typ, where = reflect.TypeFor[yamlTransition](), "transition"
			case "watchers":
				typ, where = reflect.TypeFor[yamlWatcher](), "watcher"
			default:
				continue
			}
			if seq := doc.Content[i+1]; seq.Kind == yaml.SequenceNode {
				for _, item := range seq.Content {
					check(item, typ, where)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// fieldNames returns the names that the struct tag key (json or yaml)
// gives typ's exported fields, leaving out those tagged "-"; an untagged
// field goes by its Go name.
func fieldNames(typ reflect.Type, key string) []string {
	names := make([]string, 0, typ.NumField())
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get(key), ",")
		if f.IsExported() && name != "-" {
			names = append(names, cmp.Or(name, f.Name))
		}
	}
	return names
}
