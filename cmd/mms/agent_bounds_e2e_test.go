package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mms-io/mms/manager"
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
