package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
)

// TestTemplatedValueIsOneArgument is issue 23's seventh finding, with a
// real agent process: a fact (or machine data) used in an exec watcher's
// templated command is exactly one argument, whatever it holds. On main
// the rendered line was split again, quotes honoured, and this one value
// became six arguments, one of them --output=/etc/passwd.
func TestTemplatedValueIsOneArgument(t *testing.T) {
	f := newOperatorFixture(t)
	value := `x' 'y z' --output=/etc/passwd 'w`
	facts := writeFile(t, f.dir, "facts.json", fmt.Sprintf(`{"opt": %q}`, value))
	out := filepath.Join(t.TempDir(), "args")
	yaml := `name: show
version: 1.0.0
initial_state: idle
transitions:
  - name: shown
    from: [idle]
    destination: done
watchers:
  - name: show
    type: exec
    state_match: [idle]
    success_transition: shown
    interval: 1m
    properties:
      command: ./show.sh --opt={{ lookup "facts.opt" "" }} {{ lookup "facts.opt" "" }}
`
	// The script writes a whole file or none: the test reads it as soon as
	// it exists.
	script := "#!/bin/sh\n{ echo \"$#\"; for a in \"$@\"; do echo \"[$a]\"; done; } > " + out + ".tmp && mv " + out + ".tmp " + out + "\n"
	entry := f.repo.publishFiles(t, "show", "1.0.0", map[string]string{"machine.yaml": yaml, "show.sh": script})
	a := startTestAgentProcess(t, f.pub, f.state, "--facts", facts)
	writeMachines(t, f.dir, entry)
	packPut(t, f.sign, a.login.flags())
	var got string
	natstest.Eventually(t, e2eTimeout, func() error {
		b, err := os.ReadFile(out)
		got = string(b)
		return err
	})
	want := "2\n[--opt=" + value + "]\n[" + value + "]\n"
	if got != want {
		t.Errorf("show.sh got these arguments:\n%s\nwant two, the value whole in each:\n%s", got, want)
	}
	a.shutdown(t)
}
