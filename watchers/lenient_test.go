package watchers

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lenientWatcher has a field of every kind Decode converts.
type lenientWatcher struct {
	Flag   bool     `json:"flag,omitempty"`
	Count  int      `json:"count,omitempty"`
	Port   uint     `json:"port,omitempty"`
	Wait   Duration `json:"wait,omitzero"`
	Name   string   `json:"name,omitempty"`
	Nested *struct {
		On   bool `json:"on"`
		Port uint `json:"port"`
	} `json:"nested,omitempty"`
	Renamed bool `json:"-"`

	normalized bool
}

func (*lenientWatcher) Check(context.Context) (Result, error) { return Result{}, nil }

func (w *lenientWatcher) Normalize() []string {
	if w.Name != "old" {
		return nil
	}
	w.Name, w.normalized = "new", true
	return []string{`name: "old" is the old name: write name: new`}
}

func init() {
	Register(Info{Type: "lenient_test", New: func() Watcher { return new(lenientWatcher) }})
}

func TestDecodeWeakTyping(t *testing.T) {
	tests := []struct {
		name, props string
		want        []string // warnings
		err         string
	}{
		{name: "canonical", props: `{"flag":true,"count":3,"port":80,"wait":"5s","name":"x","nested":{"on":false,"port":1}}`},
		{name: "empty", props: ``},
		// Choria's file watcher test: gather_initial_state: "t".
		{name: "t", props: `{"flag":"t"}`, want: []string{`flag: "t" is a string, read as true: write flag: true`}},
		{name: "false", props: `{"flag":"FALSE"}`, want: []string{`flag: "FALSE" is a string, read as false: write flag: false`}},
		{name: "whole numbers", props: `{"count":"-3","port":" 8080 "}`, want: []string{
			`count: "-3" is a string, read as -3: write count: -3`,
			`port: " 8080 " is a string, read as 8080: write port: 8080`,
		}},
		{name: "nested", props: `{"nested":{"on":"1","port":"22"}}`, want: []string{
			`nested.on: "1" is a string, read as true: write on: true`,
			`nested.port: "22" is a string, read as 22: write port: 22`,
		}},
		{name: "key in another case", props: `{"Flag":"true"}`, want: []string{`Flag: "true" is a string, read as true: write Flag: true`}},
		{name: "durations take strings already", props: `{"wait":"10"}`},
		{name: "strings stay strings", props: `{"name":"true"}`},
		{name: "normalized", props: `{"name":"old"}`, want: []string{`name: "old" is the old name: write name: new`}},
		{name: "not a boolean", props: `{"flag":"yes"}`, err: "properties: json: cannot unmarshal string into Go struct field lenientWatcher.flag of type bool"},
		{name: "negative port", props: `{"port":"-1"}`, err: "properties: json: cannot unmarshal string into Go struct field lenientWatcher.port of type uint"},
		{name: "unknown field", props: `{"flg":"t"}`, err: `properties: json: unknown field "flg"`},
		{name: "ignored field", props: `{"Renamed":"t"}`, err: `properties: json: unknown field "Renamed"`},
		{name: "not an object", props: `["t"]`, err: "properties: json: cannot unmarshal array into Go value of type watchers.lenientWatcher"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, warnings, err := Decode("lenient_test", json.RawMessage(tt.props))
			if got := errText(err); got != tt.err {
				t.Fatalf("Decode(%s) err = %q, want %q", tt.props, got, tt.err)
			}
			if diff := cmp.Diff(tt.want, warnings); diff != "" {
				t.Errorf("Decode(%s) warnings (-want +got):\n%s", tt.props, diff)
			}
			if err != nil {
				return
			}
			if _, err := Build("lenient_test", json.RawMessage(tt.props)); err != nil {
				t.Errorf("Build(%s) = %v after Decode accepted it", tt.props, err)
			}
			if lw := w.(*lenientWatcher); tt.name == "t" && !lw.Flag || tt.name == "normalized" && (!lw.normalized || lw.Name != "new") {
				t.Errorf("Decode(%s) = %+v: not converted", tt.props, lw)
			}
		})
	}
}

// FuzzDecode feeds arbitrary properties to Decode: it never panics, and
// what it accepts Build accepts.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"flag":"t","nested":{"port":"22"}}`, `{"count":"-3"}`, `{"Flag":"1","nested":null}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, props []byte) {
		if _, _, err := Decode("lenient_test", props); err != nil {
			return
		}
		if _, err := Build("lenient_test", props); err != nil {
			t.Errorf("Build(%s) = %v after Decode accepted it", props, err)
		}
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
