package execwatcher

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/render"
)

var validateTests = []struct {
	name  string
	props string
	err   string // exact error from watchers.Build, "" for none
}{
	{name: "minimal", props: `{"command":"check.sh"}`},
	{name: "everything", props: `{"command":"check.sh -v","environment":["A=1","B="],"timeout":"30s","parse_as_data":true,"gather_initial_state":true}`},
	{name: "timeout as seconds", props: `{"command":"x","timeout":5}`},
	{name: "path override", props: `{"command":"x","environment":["PATH=/opt/bin"]}`},
	{name: "missing command", props: `{}`, err: "properties: command: required"},
	{name: "blank command", props: `{"command":"  "}`, err: "properties: command: required"},
	{name: "unterminated quote", props: `{"command":"echo 'x"}`, err: "properties: command: unterminated single quote at offset 5"},
	{name: "shell pipe", props: `{"command":"a | b"}`, err: `properties: command: shell operator "|": commands run without a shell; quote it to pass it literally, or run sh -c '…'`},
	{name: "typo", props: `{"comand":"x"}`, err: `properties: json: unknown field "comand"`},
	{name: "wrong type", props: `{"command":["x"]}`, err: "properties: json: cannot unmarshal array into Go struct field Watcher.command of type string"},
	{name: "env without equals", props: `{"command":"x","environment":["FOO"]}`, err: `properties: environment[0] "FOO": want KEY=VALUE`},
	{name: "env bad name", props: `{"command":"x","environment":["A=1","1X=2"]}`, err: `properties: environment[1] "1X=2": invalid variable name "1X"`},
	{name: "env reserved", props: `{"command":"x","environment":["WATCHER_DATA=/x"]}`, err: `properties: environment[0] "WATCHER_DATA=/x": WATCHER_DATA is set by the watcher`},
	{name: "bad timeout", props: `{"command":"x","timeout":"soon"}`, err: `properties: invalid duration "soon": want e.g. 30s, 5m, 1h30m, 2d`},
	{name: "timeout overflows", props: `{"command":"x","timeout":1e30}`, err: `properties: invalid duration "1e30": too long`},
	{name: "timeout too long", props: `{"command":"x","timeout":"2h"}`, err: "properties: timeout: 2h0m0s is longer than the maximum 1h0m0s"},
	{name: "governor", props: `{"command":"x","governor":"g","governor_timeout":"10m"}`},
	{name: "suppress success announce", props: `{"command":"x","suppress_success_announce":true}`},
	{name: "disown", props: `{"command":"x","disown":true,"timeout":"5s","environment":["A=1"]}`},
	{name: "bad governor", props: `{"command":"x","governor":"a.b"}`, err: `properties: governor: "a.b" must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`},
	{name: "governor timeout alone", props: `{"command":"x","governor_timeout":"1m"}`}, // ignored, as in Choria; see TestDecodeWarnings
	{name: "governor timeout too long", props: `{"command":"x","governor":"g","governor_timeout":"2h"}`, err: "properties: governor_timeout: 2h0m0s is longer than the maximum 1h0m0s"},
	{name: "disown with parse_as_data", props: `{"command":"x","disown":true,"parse_as_data":true}`, err: "properties: disown: cannot be combined with parse_as_data: a disowned command's output is never read"},
	{name: "disown with governor", props: `{"command":"x","disown":true,"governor":"g"}`, err: "properties: disown: cannot be combined with governor: the slot would be freed as soon as the command started"},
	{name: "every problem", props: `{"environment":["x"],"timeout":"2h"}`, err: "properties: command: required\n" +
		`environment[0] "x": want KEY=VALUE` + "\ntimeout: 2h0m0s is longer than the maximum 1h0m0s"},
}

func TestValidate(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watchers.Build("exec", json.RawMessage(tt.props))
			if got := errString(err); got != tt.err {
				t.Errorf("Build(exec, %s) err = %q, want %q", tt.props, got, tt.err)
			}
		})
	}
}

func TestValidateDefaults(t *testing.T) {
	w, err := watchers.Build("exec", json.RawMessage(`{"command":"a 'b c'"}`))
	if err != nil {
		t.Fatal(err)
	}
	ew := w.(*Watcher)
	if ew.timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want %v", ew.timeout, DefaultTimeout)
	}
	if ew.govWait != DefaultGovernorTimeout {
		t.Errorf("governor wait = %v, want %v", ew.govWait, DefaultGovernorTimeout)
	}
	if want := []string{"a", "b c"}; !slices.Equal(ew.argv, want) {
		t.Errorf("argv = %q, want %q", ew.argv, want)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzDecodeProperties feeds arbitrary properties through the registry's
// strict decoding and Validate: it must never panic, and a config it accepts
// must be runnable.
func FuzzDecodeProperties(f *testing.F) {
	for _, tt := range validateTests {
		f.Add([]byte(tt.props))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := watchers.Build("exec", b)
		if err != nil {
			return
		}
		ew := w.(*Watcher)
		if (len(ew.argv) == 0 && !render.Has(ew.Command)) || ew.timeout <= 0 || ew.timeout > MaxTimeout {
			t.Fatalf("Build(%q) accepted argv %q, timeout %v", b, ew.argv, ew.timeout)
		}
	})
}
