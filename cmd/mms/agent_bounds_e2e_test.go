package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/manager"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// TestAgentBoundedWork is issues 18.4 and 18.6 with a real agent: a spec
// whose archive server drips one byte at a time, and whose other entry has
// a matcher that would burn seconds of CPU, holds the node up for neither:
// the matcher fails with its time bound while the other machines install,
// and a newer spec that fixes the source is applied at once, stopping the
// stalled download.
func TestAgentBoundedWork(t *testing.T) {
	f := newOperatorFixture(t)
	dir, state, repo, sign := f.dir, f.state, f.repo, f.sign
	a := startTestAgent(t, f.pub, state)
	server := a.login.flags()

	dripping := make(chan struct{}, 1)
	drip := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case dripping <- struct{}{}:
		default:
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			_, _ = w.Write([]byte{0x1f})
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(drip.Close)

	web := repo.publish(t, "web", "1.0.0")
	slow := web
	slow.Source = drip.URL + "/web-1.0.0.tar.gz"
	db := repo.publish(t, "db", "1.0.0")
	db.Match = `none(1..999999, identity("^x" + string(#)))` // seconds of CPU unbounded
	cache := repo.publish(t, "cache", "1.0.0")
	writeMachines(t, dir, slow, db, cache)
	first := packPut(t, sign, server)
	select {
	case <-dripping:
	case <-time.After(e2eTimeout):
		t.Fatal("the agent never started the dripping download")
	}

	writeMachines(t, dir, web, db, cache)
	serial := packPut(t, append(sign, "--serial", fmt.Sprint(first+1)), server)
	a.waitSpecEvent(t, serial, func(ev specEvent) error {
		if err := installedVersion(t, state, "1.0.0"); err != nil {
			return err
		}
		for _, r := range ev.Results {
			if (r.Name == "web" || r.Name == "cache") && r.Outcome != manager.EntryInstalled && r.Outcome != manager.EntryUnchanged {
				return fmt.Errorf("result for %s = %+v, want installed", r.Name, r)
			}
		}
		for _, r := range ev.Results {
			if r.Name == "db" && r.Outcome == manager.EntryFailed && strings.Contains(r.Reason, "matcher ran out of time: stopped after 1s") {
				return nil
			}
		}
		return fmt.Errorf("results %+v, want db failed by its matcher's time bound", ev.Results)
	})
	waitFor(t, a.errOut, "a newer spec arrived during a reconcile pass; stopping that pass")
	a.shutdown(t)
}

// TestAgentLargeSpec is issue 27.3 from outside: a spec of 10,000 entries
// (3.5 MB plain) is packed compressed into one envelope, published with
// mms put, shown, and applied by a real agent, which installs the one
// entry meant for it and skips the others by their matchers.
func TestAgentLargeSpec(t *testing.T) {
	f := newOperatorFixture(t)
	a := startTestAgent(t, f.pub, f.state)
	server := a.login.flags()
	entries := []spec.Machine{f.repo.publish(t, "web", "1.0.0")}
	for i := 1; i < 10_000; i++ {
		name := fmt.Sprintf("m%05d", i)
		sum := sha256.Sum256([]byte(name))
		sums := sha256.Sum256([]byte(name + "/SHA256SUMS"))
		entries = append(entries, spec.Machine{Name: name, Source: "nats://ARCHIVES/" + name + ".tar.gz",
			Checksum: hex.EncodeToString(sum[:]), VerifyChecksum: hex.EncodeToString(sums[:]),
			Match: fmt.Sprintf(`identity('^edge-%05d[.]')`, i)})
	}
	writeMachines(t, f.dir, entries...)
	packed := mmsOK(t, "", append([]string{"pack", "machines.json"}, f.sign...)...)
	if !strings.Contains(packed.stderr, "the spec is compressed to fit in one envelope") || len(packed.stdout) > packer.MaxEnvelopeSize {
		t.Fatalf("mms pack of 10,000 entries wrote %d bytes, stderr %q; want a compressed envelope, said so", len(packed.stdout), packed.stderr)
	}
	mmsOK(t, packed.stdout, append([]string{"put"}, server...)...)
	natstest.Eventually(t, e2eTimeout, func() error { return installedVersion(t, f.state, "1.0.0") })
	// The manager's event of the pass lists what changed and counts the
	// 9,999 skipped entries: 10,000 results would not fit in a message.
	ev := a.waitSpecEvent(t, serialOf(t, packed.stdout), func(ev specEvent) error {
		if len(ev.Results) != 1 || ev.Results[0].Name != "web" || ev.Omitted != 9_999 {
			return fmt.Errorf("event results %+v, %d omitted; want web installed and 9,999 omitted", ev.Results, ev.Omitted)
		}
		return nil
	})
	if ev.Results[0].Outcome != manager.EntryInstalled {
		t.Errorf("web's result = %+v, want installed", ev.Results[0])
	}
	shown := mmsOK(t, "", append([]string{"show"}, server...)...).stdout
	if !strings.Contains(shown, "Format:     v2, compressed") || !strings.Contains(shown, "m09999") {
		t.Errorf("mms show of the live spec:\n%.400s…\nwant it compressed, with every entry", shown)
	}
	a.shutdown(t)
	if strings.Contains(a.errOut.String(), "publish machine event failed") {
		t.Errorf("the agent failed to publish an event:\n%s", a.errOut.String())
	}
}

// serialOf returns the serial of a v2 envelope.
func serialOf(t *testing.T, envelope string) uint64 {
	t.Helper()
	o, err := packer.Inspect([]byte(envelope))
	if err != nil {
		t.Fatal(err)
	}
	return o.Spec.Serial
}
