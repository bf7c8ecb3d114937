// Package render renders the templates Choria allows in some watcher
// properties (a kv watcher's key, for example): Go text/template text such
// as
//
//	key: nodes.{{ .Identity }}
//	key: config.{{ lookup "facts.os.family" "unknown" | ToLower }}
//
// A property is rendered once, when its watcher is provisioned (the machine
// loads), never again while it runs: Choria renders on every use, so a
// template that reads machine data changes there as the data changes, and
// here only when the machine is reloaded. The file watcher's managed file
// is the exception: it renders again before every check, as Choria does
// before every write (a [Renderer] per check).
//
// The template's dot is a [Data]: .Identity, .Machine, .Watcher, .Facts and
// .Data (the facts and the machine data as maps; a missing key is an
// error). Choria's template functions are available:
//
//	lookup PATH DEFAULT  the value at the dotted PATH of {"facts": …, "data": …}
//	                     ("facts.os.family", "data.BUCKET_key.sub",
//	                     "facts.disks.0.size"), DEFAULT when there is none.
//	                     Choria uses gjson paths; only their plain dotted
//	                     form is supported here (no wildcards, queries or
//	                     modifiers)
//	ToLower, ToUpper     case conversion
//	Title, Capitalize    title case (American English rules)
//	StringsJoin LIST     the list's items joined with ", "
//	Base64Encode, Base64Decode
//
// Choria's templates have no dot at all (`{{ .Identity }}` renders
// "<no value>" there); the dot is an mms addition.
package render

import (
	"encoding/base64"
	"fmt"
	"strings"
	"text/template"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"

	"github.com/mms-io/mms/spec"
	"github.com/mms-io/mms/watchers"
)

// Data is what a template sees as its dot.
type Data struct {
	// Identity is the node identity.
	Identity string
	// Machine and Watcher are the machine's and the watcher's names.
	Machine, Watcher string
	// Facts are the node's facts.
	Facts map[string]any
	// Data is the machine data.
	Data map[string]any
}

// FromDeps returns the template data of the watcher d describes, reading
// the facts and the machine data now.
func FromDeps(d watchers.Deps) Data {
	data := Data{Identity: d.Identity, Machine: d.Machine, Watcher: d.Watcher, Facts: map[string]any{}, Data: map[string]any{}}
	if d.Facts != nil {
		if f := d.Facts(); f != nil {
			data.Facts = f
		}
	}
	if d.Data != nil {
		data.Data = d.Data.All()
	}
	return data
}

// Has reports whether s holds a template action, that is whether it needs
// rendering.
func Has(s string) bool { return strings.Contains(s, "{{") }

// Check parses s as a template, for Validate: a syntax error or an unknown
// function is reported when the machine loads, not when it runs. extra are
// functions of the watcher's own, as given to [String].
func Check(s string, extra ...template.FuncMap) error {
	_, err := parse(s, extra)
	return err
}

// String renders s with d and the standard functions plus extra (a
// watcher's own, such as the nagios watcher's o). Text without a template
// action is returned as it is.
func String(s string, d Data, extra ...template.FuncMap) (string, error) {
	if !Has(s) {
		return s, nil
	}
	t, err := parse(s, extra)
	if err != nil {
		return "", err
	}
	t.Funcs(funcs(d))
	for _, fm := range extra {
		t.Funcs(fm)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("render template %q: %w", s, err)
	}
	return b.String(), nil
}

// Renderer renders the templated properties of one watcher, with the data
// of the watcher its [watchers.Deps] describe. It reads the facts and the
// machine data ([FromDeps]) when it meets the first template, and once, so
// a watcher whose properties hold no template reads neither. It is meant
// for one Provision and is not safe for concurrent use.
type Renderer struct {
	deps  watchers.Deps
	extra []template.FuncMap
	data  *Data
}

// NewRenderer returns the Renderer of the watcher d describes; extra are
// the watcher's own functions, as given to [String].
func NewRenderer(d watchers.Deps, extra ...template.FuncMap) *Renderer {
	return &Renderer{deps: d, extra: extra}
}

// String renders s like [String]: text without a template action is
// returned as it is.
func (r *Renderer) String(s string) (string, error) {
	if !Has(s) {
		return s, nil
	}
	if r.data == nil {
		d := FromDeps(r.deps)
		r.data = &d
	}
	return String(s, *r.data, r.extra...)
}

// Parse parses s as [String] would, with the standard functions and
// extra, for a caller that changes the template before running it with
// [Renderer.Execute] (a command line quotes what each action prints).
func Parse(s string, extra ...template.FuncMap) (*template.Template, error) {
	return parse(s, extra)
}

// Parse is [Parse] with the Renderer's own functions.
func (r *Renderer) Parse(s string) (*template.Template, error) {
	return parse(s, r.extra)
}

// Execute runs t, from [Parse], with the data and functions of the
// Renderer's watcher, plus more.
func (r *Renderer) Execute(t *template.Template, more template.FuncMap) (string, error) {
	if r.data == nil {
		d := FromDeps(r.deps)
		r.data = &d
	}
	t.Funcs(funcs(*r.data))
	for _, fm := range r.extra {
		t.Funcs(fm)
	}
	t.Funcs(more)
	var b strings.Builder
	if err := t.Execute(&b, *r.data); err != nil {
		return "", fmt.Errorf("render template: %w", err)
	}
	return b.String(), nil
}

// parse parses s with placeholder functions (the real ones need the data).
func parse(s string, extra []template.FuncMap) (*template.Template, error) {
	t := template.New("property").Option("missingkey=error").Funcs(funcs(Data{}))
	for _, fm := range extra {
		t.Funcs(fm)
	}
	t, err := t.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", s, err)
	}
	return t, nil
}

// funcs returns Choria's template functions over d.
func funcs(d Data) template.FuncMap {
	title := cases.Title(language.AmericanEnglish).String
	root := map[string]any{"facts": d.Facts, "data": d.Data}
	return template.FuncMap{
		"lookup": func(path string, dflt any) any {
			if v := spec.LookupFact(root, path); v != nil {
				return v
			}
			return dflt
		},
		"ToLower":      strings.ToLower,
		"ToUpper":      strings.ToUpper,
		"Title":        title,
		"Capitalize":   title,
		"StringsJoin":  join,
		"Base64Encode": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"Base64Decode": func(s string) (string, error) {
			b, err := base64.StdEncoding.DecodeString(s)
			return string(b), err
		},
	}
}

// join joins the items of a list of strings or of any values (what lookup
// returns for a JSON array) with ", ".
func join(list any) (string, error) {
	switch l := list.(type) {
	case []string:
		return strings.Join(l, ", "), nil
	case []any:
		parts := make([]string, len(l))
		for i, v := range l {
			parts[i] = fmt.Sprint(v)
		}
		return strings.Join(parts, ", "), nil
	default:
		return "", fmt.Errorf("StringsJoin: want a list, got %T", list)
	}
}
