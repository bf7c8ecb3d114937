package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// agentFleet is real agent processes on one embedded server (the first
// agent's), an operator's directory and the serials it packs.
type agentFleet struct {
	f      *operatorFixture
	ids    []string
	login  agentLogin // the embedded server's (the first agent's)
	conn   []string   // the operator commands' connection flags
	agents map[string]*proc
	serial uint64
}

// startAgents starts one agent process per identity, the first with the embedded
// server, each with the common flags and extra(id)'s (extra may be nil),
// and waits until every one has reported its status.
func startAgents(t *testing.T, ids []string, extra func(id string) []string) *agentFleet {
	t.Helper()
	mmsBinary(t) // built before the fixture changes directory
	tf := &agentFleet{f: newOperatorFixture(t), ids: ids, agents: map[string]*proc{}, serial: uint64(time.Now().Unix())}
	pub := strings.TrimSpace(readFile(t, tf.f.pub))
	for i, id := range ids {
		args := []string{"agent", "--state-dir", filepath.Join(tf.f.dir, fmt.Sprintf("state-%d", i)), "--identity", id,
			"--public-key", pub, "--allow-http", "--status-interval", "1s"}
		if i == 0 {
			args = append(args, "--listen", "127.0.0.1:0")
		} else {
			args = append(args, tf.conn...)
		}
		if extra != nil {
			args = append(args, extra(id)...)
		}
		tf.agents[id] = startMMS(t, nil, args...)
		if i == 0 {
			waitFor(t, tf.agents[id].stderr, "listening on")
			tf.login = loginOf(t, filepath.Join(tf.f.dir, "state-0"))
			tf.conn = tf.login.flags()
		}
	}
	for _, id := range ids {
		pollStatus(t, tf.conn, id, func(d *nodestatus.Document) error {
			if d.Seen == nil {
				return fmt.Errorf("%s has not reported yet", id)
			}
			return nil
		})
	}
	return tf
}

// pack signs entries with the next serial and returns the envelope.
func (tf *agentFleet) pack(t *testing.T, entries ...spec.Machine) string {
	t.Helper()
	writeMachines(t, tf.f.dir, entries...)
	tf.serial++
	return mmsOK(t, "", "pack", "machines.json", "--key-file", tf.f.keyFile, "--allow-http", "--serial", fmt.Sprint(tf.serial)).stdout
}

// put packs entries and puts them with args (such as --wait 60s).
func (tf *agentFleet) put(t *testing.T, args []string, entries ...spec.Machine) result {
	t.Helper()
	return mms(t, tf.pack(t, entries...), append(append([]string{"put"}, args...), tf.conn...)...)
}

// entry polls identity's status until its entry name satisfies ok.
func (tf *agentFleet) entry(t *testing.T, identity, name string, ok func(e nodestatus.Entry) error) nodestatus.Entry {
	t.Helper()
	var out nodestatus.Entry
	pollStatus(t, tf.conn, identity, func(d *nodestatus.Document) error {
		out, _ = d.Entry(name)
		if err := ok(out); err != nil {
			return fmt.Errorf("%s: %s: %w (%+v)", identity, name, err, out)
		}
		return nil
	})
	return out
}

// waves returns the identities of each wave of m's rollout over ids.
func wavesOf(t *testing.T, ids []string, m spec.Machine) [][]string {
	t.Helper()
	return rollout.Assign(ids, m.Name, m.Checksum, mustParseWaves(t, m.Rollout.Waves))
}

// gateRollout returns e with a health gate (healthy in "ready" within
// within) and a rollout in waves.
func gateRollout(e spec.Machine, within time.Duration, waves ...string) spec.Machine {
	e.Health = &spec.Health{States: []string{"ready"}, Within: spec.Duration(within)}
	e.Rollout = &spec.Rollout{Waves: waves}
	return e
}

// docs polls `mms status --json` until ok accepts the documents of every
// agent of the fleet, by identity, and returns them.
func (tf *agentFleet) docs(t *testing.T, ok func(docs map[string]*nodestatus.Document) error) map[string]*nodestatus.Document {
	t.Helper()
	var out map[string]*nodestatus.Document
	natstest.Eventually(t, e2eTimeout, func() error {
		r := mms(t, "", append([]string{"status", "--json"}, tf.conn...)...)
		if r.code != 0 {
			return fmt.Errorf("mms status --json: exit %d: %s", r.code, r.stderr)
		}
		var list []nodestatus.Document
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			return fmt.Errorf("mms status --json printed %q: %w", r.stdout, err)
		}
		out = map[string]*nodestatus.Document{}
		for i := range list {
			out[list[i].Identity] = &list[i]
		}
		for _, id := range tf.ids {
			if out[id] == nil {
				return fmt.Errorf("no document of %s", id)
			}
		}
		return ok(out)
	})
	return out
}

// each returns a check that ok accepts entry name of every node of ids
// (in the documents docs polls), naming the first node it does not.
func each(ids []string, name string, ok func(id string, e nodestatus.Entry) error) func(map[string]*nodestatus.Document) error {
	return func(docs map[string]*nodestatus.Document) error {
		for _, id := range ids {
			e, _ := docs[id].Entry(name)
			if err := ok(id, e); err != nil {
				return fmt.Errorf("%s: %s: %w (%+v)", id, name, err, e)
			}
		}
		return nil
	}
}

// editSerial matches the serial `mms rollout pause|resume|undo` wrote.
var editSerial = regexp.MustCompile(`(?m)^put \S+ revision \d+ \(was \d+\): serial (\d+)$`)

// rollout runs `mms rollout VERB MACHINE --key-file ops.key`, which signs
// a spec, and returns its output; the fleet's next serial follows it.
func (tf *agentFleet) rollout(t *testing.T, verb, machine string) string {
	t.Helper()
	out := mmsOK(t, "", append([]string{"rollout", verb, machine, "--key-file", tf.f.keyFile}, tf.conn...)...).stdout
	m := editSerial.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("mms rollout %s %s printed no serial:\n%s", verb, machine, out)
	}
	serial, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	tf.serial = max(tf.serial, serial)
	return out
}
