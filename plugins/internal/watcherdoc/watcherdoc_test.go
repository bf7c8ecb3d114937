package watcherdoc

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/mms-io/mms/watchers"
	_ "github.com/mms-io/mms/watchers/exec"
	_ "github.com/mms-io/mms/watchers/gossip"
	_ "github.com/mms-io/mms/watchers/kv"
)

func TestGenerate(t *testing.T) {
	var types []watchers.Info
	for _, typ := range []string{"exec", "gossip", "kv"} {
		info, ok := watchers.Lookup(typ)
		if !ok {
			t.Fatalf("%s not registered", typ)
		}
		types = append(types, info)
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	md, err := Generate(types, dir)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(md)
	for _, want := range []string{
		Header,
		"| [exec](#exec) | `github.com/mms-io/mms/watchers/exec` | `io.choria.machine.watcher.exec.v1.state` |",
		"\n## exec\n\nPackage execwatcher is the \"exec\" watcher: it runs a command from the machine directory and reports its exit status.\n",
		"Interval: default none (only on state changes), minimum 500ms.",
		// A tagged default, a doc link made code, the Go name made the property's.
		"| `timeout` | duration | `10s` | `timeout` is how long the command may run before its process group is killed and the check fails with `ErrTimeout`; at most 1h. Ignored with disown. |",
		"| `environment` | list of strings | — |",
		"| `disown` | boolean | false |",
		// A struct property is documented field by field.
		"| `registration` | object | — |",
		"| `registration.port` | integer | — | `port` is the service's port. |",
		// A pointer to a bool, with its default.
		"| `bucket_prefix` | boolean | `true` |",
		// Refused Choria types are listed.
		"| homekit | Choria removed it too (go-choria#2288): switch the device from an exec watcher |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("Generate() lacks %q", want)
		}
	}
	if strings.Contains(doc, "argv") || strings.Contains(doc, "| `Prefix`") {
		t.Error("Generate() documents unexported fields")
	}
}

func TestTypeName(t *testing.T) {
	type obj struct{ A int }
	for _, tt := range []struct {
		v    any
		want string
	}{
		{"", "string"}, {true, "boolean"}, {new(bool), "boolean"}, {3, "integer"}, {uint(3), "integer"},
		{1.5, "number"}, {[]string{}, "list of strings"}, {map[string]string{}, "map of strings"},
		{map[string][]string{}, "map of list of strings"}, {[]int{}, "list of integers"},
		{watchers.Duration(0), "duration"}, {obj{}, "object"}, {[]bool{}, "list of booleans"},
	} {
		if got := typeName(reflect.TypeOf(tt.v)); got != tt.want {
			t.Errorf("typeName(%T) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestGenerateRejectsNonStruct(t *testing.T) {
	_, err := Generate([]watchers.Info{{Type: "weird", Version: "v1", New: func() watchers.Watcher { return weird(nil) }}}, ".")
	if err == nil || !strings.Contains(err.Error(), `watcher type "weird": New returns a func`) {
		t.Errorf("Generate(func watcher) = %v, want an error naming the type", err)
	}
}

type weird func()

func (weird) Check(context.Context) (watchers.Result, error) { return watchers.Result{}, nil }
