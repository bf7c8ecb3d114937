package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natsbox"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/treetest"
)

// consumedEvent is one line of interop/choria-consumer's output.
type consumedEvent struct {
	Ready      bool     `json:"ready"`
	Subject    string   `json:"subject"`
	Type       string   `json:"type"`
	Machine    string   `json:"machine"`
	Name       string   `json:"name"`
	Transition string   `json:"transition"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	Outcome    string   `json:"outcome"`
	Problems   []string `json:"problems"`
}

// TestChoriaConsumerReadsEvents runs a consumer written for Choria's
// events, in JavaScript with the CloudEvents SDK (interop/choria-consumer),
// against a real agent process: every event the agent publishes while it
// installs and runs a machine must read as Choria's (types, subjects,
// source, data fields), and a watcher's state event must come before the
// transition it causes, as Choria orders them.
func TestChoriaConsumerReadsEvents(t *testing.T) {
	node, nerr := exec.LookPath("node")
	npm, perr := exec.LookPath("npm")
	if nerr != nil || perr != nil {
		t.Skip("node and npm are needed to run the JavaScript consumer (interop/choria-consumer)")
	}
	if testing.Short() {
		t.Skip("installs npm packages and runs an agent process")
	}
	mmsBinary(t) // build before the test changes directory
	consumerDir := filepath.Join(t.TempDir(), "consumer")
	treetest.Copy(t, filepath.Join(pkgDir, "..", "..", "interop", "choria-consumer"), consumerDir)
	_ = os.RemoveAll(filepath.Join(consumerDir, "node_modules"))
	install := exec.CommandContext(t.Context(), npm, "ci", "--no-audit", "--no-fund")
	install.Dir = consumerDir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci (interop/choria-consumer): %v\n%s", err, out)
	}

	dir := t.TempDir()
	t.Chdir(dir)
	_, pub := newKeyPair(t, dir, "ops")
	state := filepath.Join(dir, "state")
	startMMS(t, nil, "agent", "--public-key", strings.TrimSpace(readFile(t, pub)), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--allow-http", "--identity", "web1.example.net")
	var login natsbox.CLIContext
	natstest.Eventually(t, 30*time.Second, func() error {
		c, err := natsbox.LoadContextFile(filepath.Join(state, natsbox.LocalContextFile))
		login = c
		return err
	})
	consumer := exec.CommandContext(t.Context(), node, "consumer.mjs", login.URL, login.NKey, login.CA)
	consumer.Dir = consumerDir
	consumer.Env = append(os.Environ(), "MMS_SECONDS=90")
	stdout, err := consumer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	consumer.Stderr = &stderr
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = consumer.Process.Kill(); _ = consumer.Wait() })
	var mu sync.Mutex
	var events []consumedEvent
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev consumedEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev.Problems = []string{fmt.Sprintf("unreadable line %q", sc.Text())}
			}
			if ev.Ready {
				close(ready)
				continue
			}
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("the consumer did not subscribe: %s", stderr.String())
	}

	repo := newArchiveRepo(t)
	writeMachines(t, dir, repo.publish(t, "web", "1.0.0"))
	packPut(t, []string{"--key-file", "ops.key", "--allow-http"}, []string{"--state-dir", state})

	// web's exec check succeeds and fires checked: idle -> ready.
	var got []consumedEvent
	natstest.Eventually(t, 60*time.Second, func() error {
		mu.Lock()
		got = append(got[:0], events...)
		mu.Unlock()
		for _, ev := range got {
			if ev.Machine == "web" && ev.Transition == "checked" {
				return nil
			}
		}
		return errors.New("no web transition read yet")
	})
	for _, ev := range got {
		if len(ev.Problems) > 0 {
			t.Errorf("the Choria consumer found problems in %s (%s): %v", ev.Type, ev.Subject, ev.Problems)
		}
	}
	// Order: exec check's state event, then the transition it fired; and
	// the manager's kv state event before its spec_changed transition.
	for _, pair := range []struct{ machine, watcherType, transition string }{
		{"web", "io.choria.machine.watcher.exec.v1.state", "checked"},
		{"mms_manager", "io.choria.machine.watcher.kv.v1.state", "spec_changed"},
	} {
		state, trans := -1, -1
		for i, ev := range got {
			if ev.Machine == pair.machine && ev.Type == pair.watcherType && state < 0 {
				state = i
			}
			if ev.Machine == pair.machine && ev.Transition == pair.transition && trans < 0 {
				trans = i
			}
		}
		if state < 0 || trans < 0 || state > trans {
			t.Errorf("%s: %s at %d, transition %s at %d; want the state event first (Choria's order)", pair.machine, pair.watcherType, state, pair.transition, trans)
		}
	}
	if t.Failed() {
		t.Logf("events read by the consumer: %+v\nconsumer stderr: %s", got, stderr.String())
	}
}
