package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/manager/rollout"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/spec"
)

// agentFleet is real agent processes on one embedded server (the first
// agent's), an operator's directory and the serials it packs.
type agentFleet struct {
	f      *operatorFixture
	ids    []string
	url    string
	conn   []string // the operator commands' connection flags
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
			args = append(args, "--server", tf.url)
		}
		if extra != nil {
			args = append(args, extra(id)...)
		}
		tf.agents[id] = startMMS(t, nil, args...)
		if i == 0 {
			waitFor(t, tf.agents[id].stderr, "listening on")
			tf.url = loginURL(t, filepath.Join(tf.f.dir, "state-0"))
			tf.conn = []string{"--server", tf.url}
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
