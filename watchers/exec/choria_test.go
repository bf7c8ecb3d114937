package execwatcher

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/watchers"
	"github.com/mms-io/mms/watchers/watchertest"
)

func TestSuppressSuccessAnnounce(t *testing.T) {
	tests := []struct {
		name      string
		command   string
		suppress  bool
		outcome   watchers.Outcome
		wantQuiet bool
	}{
		{name: "success suppressed", command: "true", suppress: true, outcome: watchers.Success, wantQuiet: true},
		{name: "failure still published", command: "false", suppress: true, outcome: watchers.Failure},
		{name: "success published by default", command: "true", outcome: watchers.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := watchertest.Build(t, "exec", props(t, map[string]any{"command": tt.command, "suppress_success_announce": tt.suppress}))
			res, err := w.Check(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.outcome || res.Quiet != tt.wantQuiet {
				t.Errorf("Check() = outcome %v, quiet %v; want %v, %v", res.Outcome, res.Quiet, tt.outcome, tt.wantQuiet)
			}
		})
	}
}

// governorDeps returns watcher dependencies connected to a fresh JetStream
// server that has a governor "jobs" with one slot.
func governorDeps(t *testing.T) (watchers.Deps, jetstream.JetStream) {
	t.Helper()
	nc := natstest.Connect(t, natstest.RunJetStream(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := governor.Add(t.Context(), js, "jobs", 1, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	d := watchertest.Deps(t)
	d.Conn = nc
	return d, js
}

// slotsInUse returns how many slots of governor name are taken.
func slotsInUse(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), governor.Stream(name))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestGovernor(t *testing.T) {
	d, js := governorDeps(t)
	writeScript(t, d.Dir, "job.sh", `touch "ran-$1"
while [ ! -e "go-$1" ]; do sleep 0.05; done`)
	a := watchertest.BuildWith(t, d, "exec", `{"command":"./job.sh a","governor":"jobs"}`)
	b := watchertest.BuildWith(t, d, "exec", `{"command":"./job.sh b","governor":"jobs","governor_timeout":"1s"}`)

	type result struct {
		res watchers.Result
		err error
	}
	aDone := make(chan result, 1)
	go func() {
		res, err := a.Check(t.Context())
		aDone <- result{res, err}
	}()
	natstest.Eventually(t, 10*time.Second, func() error { _, err := os.Stat(filepath.Join(d.Dir, "ran-a")); return err })
	if n := slotsInUse(t, js, "jobs"); n != 1 {
		t.Errorf("slots in use while a runs = %d, want 1", n)
	}

	// b cannot get the only slot while a holds it: it fails after its
	// governor_timeout without running.
	res, err := b.Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), `governor "jobs": no slot free`) {
		t.Errorf("Check(b while a holds the slot) err = %v, want no slot free", err)
	}
	if st := res.State.(State); st.Governor != "jobs" || st.GovernorWait < time.Second || st.PreviousOutcome != "error" {
		t.Errorf("b's state = %+v, want governor jobs, a wait of at least 1s, previous_outcome error", st)
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "ran-b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("b ran without a slot (stat err %v)", err)
	}

	if err := os.WriteFile(filepath.Join(d.Dir, "go-a"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := <-aDone; r.err != nil || r.res.Outcome != watchers.Success {
		t.Fatalf("Check(a) = %v, %v; want success", r.res.Outcome, r.err)
	}
	if n := slotsInUse(t, js, "jobs"); n != 0 {
		t.Errorf("slots in use after a ended = %d, want 0 (released)", n)
	}

	// Now b gets the slot.
	if err := os.WriteFile(filepath.Join(d.Dir, "go-b"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := b.Check(t.Context()); err != nil || res.Outcome != watchers.Success {
		t.Errorf("Check(b with the slot free) = %v, %v; want success", res.Outcome, err)
	}
}

func TestGovernorErrors(t *testing.T) {
	d, _ := governorDeps(t)
	w := watchertest.BuildWith(t, d, "exec", `{"command":"true","governor":"missing"}`)
	if _, err := w.Check(t.Context()); !errors.Is(err, governor.ErrNotFound) || !strings.Contains(err.Error(), "mms governor add missing") {
		t.Errorf("Check(missing governor) err = %v, want governor.ErrNotFound saying how to add it", err)
	}

	offline := watchertest.Deps(t)
	w = watchertest.BuildWith(t, offline, "exec", `{"command":"true","governor":"jobs"}`)
	if _, err := w.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "no NATS connection") {
		t.Errorf("Check(governor without NATS) err = %v, want one saying there is no NATS connection", err)
	}
}

func TestTemplates(t *testing.T) {
	d := watchertest.Deps(t)
	writeScript(t, d.Dir, "show.sh", `echo "$1 $2 $NODE" > shown`)
	w := watchertest.BuildWith(t, d, "exec", `{"command":"./show.sh {{ .Identity }} {{ lookup \"facts.os.family\" \"\" }}","environment":["NODE={{ .Identity | ToUpper }}"],"governor":"{{ .Machine }}-jobs"}`).(*Watcher)
	if w.Governor != "test-jobs" || w.Command != "./show.sh node.example.net linux" {
		t.Errorf("rendered governor %q, command %q", w.Governor, w.Command)
	}
	w.Governor = "" // no NATS here: run without the governor
	res, err := w.Check(t.Context())
	if err != nil || res.Outcome != watchers.Success {
		t.Fatalf("Check() = %v, %v", res.Outcome, err)
	}
	if got := res.State.(State).Command; got != "./show.sh node.example.net linux" {
		t.Errorf("state command = %q, want the rendered command", got)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, "shown"))
	if err != nil || strings.TrimSpace(string(b)) != "node.example.net linux NODE.EXAMPLE.NET" {
		t.Errorf("the command saw %q, %v", b, err)
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name, props, err string
	}{
		{name: "bad syntax", props: `{"command":"x {{ .Identity","environment":["A={{"],"governor":"{{ end }}"}`,
			err: "properties: command: template \"x {{ .Identity\": template: property:1: unclosed action\n" +
				"environment[0] template \"A={{\": template: property:1: unclosed action\n" +
				"governor: template \"{{ end }}\": template: property:1: unexpected {{end}}"},
		{name: "renders a bad command", props: `{"command":"x '{{ .Identity }}"}`,
			err: `provision: command: template "x '{{ .Identity }}" renders "x 'node.example.net": unterminated single quote at offset 2`},
		{name: "renders a bad environment entry", props: `{"command":"x","environment":["{{ .Machine }}"]}`,
			err: `provision: environment[0] template "{{ .Machine }}" renders "test": want KEY=VALUE`},
		{name: "renders a bad governor", props: `{"command":"x","governor":"{{ .Identity }}"}`,
			err: `provision: governor: template "{{ .Identity }}" renders "node.example.net", which does not match ^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := watchertest.New(watchertest.Deps(t), "exec", tt.props)
			if got := errString(err); got != tt.err {
				t.Errorf("New(exec, %s) err =\n%s\nwant\n%s", tt.props, got, tt.err)
			}
		})
	}
}
