package plugins_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mms-io/mms/plugins/internal/watcherdoc"
	"github.com/mms-io/mms/watchers"
	execwatcher "github.com/mms-io/mms/watchers/exec"
	kvwatcher "github.com/mms-io/mms/watchers/kv"
	metricwatcher "github.com/mms-io/mms/watchers/metric"
	nagioswatcher "github.com/mms-io/mms/watchers/nagios"
)

// TestWatcherDocUpToDate regenerates docs/watchers.md from the watcher
// types compiled in and compares it with the file in the tree: a property
// added, renamed or documented differently fails here until the file is
// regenerated.
func TestWatcherDocUpToDate(t *testing.T) {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want, err := watcherdoc.Generate(watchers.Types(), dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../docs/watchers.md")
	if err != nil {
		t.Fatalf("%v; run `go generate ./plugins`", err)
	}
	if string(got) != string(want) {
		diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n"))
		t.Errorf("docs/watchers.md is out of date; run `go generate ./plugins` (-generated +on disk):\n%s", diff)
	}
	for _, info := range watchers.Types() {
		if !strings.Contains(string(got), "\n## "+info.Type+"\n") {
			t.Errorf("docs/watchers.md has no section for the compiled-in type %q", info.Type)
		}
	}
}

// TestDefaultTags checks the documented defaults (`default` struct tags)
// against the constants the watchers use.
func TestDefaultTags(t *testing.T) {
	for _, tt := range []struct {
		config any
		field  string
		want   string
	}{
		{execwatcher.Watcher{}, "Timeout", execwatcher.DefaultTimeout.String()},
		{execwatcher.Watcher{}, "GovernorTimeout", execwatcher.DefaultGovernorTimeout.String()},
		{kvwatcher.Watcher{}, "ResyncInterval", kvwatcher.DefaultResyncInterval.String()},
		{kvwatcher.Watcher{}, "Mode", kvwatcher.ModeWatch},
		{nagioswatcher.Watcher{}, "Timeout", nagioswatcher.DefaultTimeout.String()},
		{metricwatcher.Watcher{}, "Timeout", metricwatcher.DefaultTimeout.String()},
	} {
		f, ok := reflect.TypeOf(tt.config).FieldByName(tt.field)
		if !ok {
			t.Errorf("%T has no field %s", tt.config, tt.field)
			continue
		}
		got := f.Tag.Get("default")
		if d, err := watchers.ParseDuration(got); err == nil && d != 0 {
			got = d.String()
		}
		if got != tt.want {
			t.Errorf("%T.%s default tag = %q, want %q", tt.config, tt.field, f.Tag.Get("default"), tt.want)
		}
	}
}
