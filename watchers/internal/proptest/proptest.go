// Package proptest runs the table and fuzz tests every watcher type has for
// its properties: build the type from JSON properties through the registry
// (strict decoding, then Validate) and compare the error.
package proptest

import (
	"encoding/json"
	"testing"

	"github.com/mms-io/mms/watchers"
)

// Case is one row of a properties table: the properties (JSON) and the
// exact error watchers.Build returns, "" when they are accepted.
type Case struct {
	Name, Props, Err string
}

// Build checks each case against watchers.Build(typ, …).
func Build(t *testing.T, typ string, cases []Case) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			_, err := watchers.Build(typ, json.RawMessage(tt.Props))
			if got := ErrString(err); got != tt.Err {
				t.Errorf("Build(%s, %s) err =\n%s\nwant\n%s", typ, tt.Props, got, tt.Err)
			}
		})
	}
}

// Fuzz seeds f with the cases' properties and feeds arbitrary properties to
// watchers.Build(typ, …): it must never panic, and check (when not nil)
// holds for every watcher it accepts.
func Fuzz(f *testing.F, typ string, cases []Case, check func(t *testing.T, props []byte, w watchers.Watcher)) {
	for _, tt := range cases {
		f.Add([]byte(tt.Props))
	}
	f.Fuzz(func(t *testing.T, props []byte) {
		w, err := watchers.Build(typ, props)
		if err != nil || check == nil {
			return
		}
		check(t, props, w)
	})
}

// ErrString returns err's text, "" for nil.
func ErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
