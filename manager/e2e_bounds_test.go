package manager_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/governor"
	"github.com/mms-io/mms/manager"
	machineswatcher "github.com/mms-io/mms/manager/machineswatcher"
)

// TestNewerSpecCancelsGovernorWait is issue 18.4/18.5 on a running node: a
// pass stuck waiting for a governor slot that someone else holds (up to
// the 5-minute bound) is stopped by a newer spec, which is applied at once.
func TestNewerSpecCancelsGovernorWait(t *testing.T) {
	n := newE2ENode(t)
	if _, err := governor.Add(t.Context(), n.js, "gate", 1, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	// The node's attempts to take a slot are visible on the subject.
	attempts, err := n.nc.SubscribeSync(governor.Subject("gate"))
	if err != nil {
		t.Fatal(err)
	}
	// Someone holds the only slot and never gives it back.
	if _, err := n.js.Publish(t.Context(), governor.Subject("gate"), []byte("squatter")); err != nil {
		t.Fatal(err)
	}
	if _, err := attempts.NextMsg(time.Second); err != nil { // the squatter's own
		t.Fatal(err)
	}
	n.start()
	gated := buildArchive(t, n.files, "web", "1.0.0", recordingMachine("web", "1.0.0", "one", "")).entry("")
	gated.Governor = "gate"
	env, stuck := n.seal(t, gated)
	mark := n.events.mark()
	n.put(t, env)
	if _, err := attempts.NextMsg(e2eWait); err != nil {
		t.Fatalf("the node never tried to take a slot: %v", err)
	}

	// The fix: the same machine without the governor.
	fixed := buildArchive(t, n.files, "web", "2.0.0", recordingMachine("web", "2.0.0", "two", "")).entry("")
	env, serial := n.seal(t, fixed)
	n.put(t, env)
	ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool { return e.State.Serial == serial })
	if r, ok := ev.result("web"); !ok || r.Outcome != manager.EntryInstalled {
		t.Fatalf("serial %d: web = %+v, want installed", serial, r)
	}
	n.waitRunning(t, "web", "2.0.0", "running")
	for _, e := range n.events.machinesSince(t, mark) {
		if e.State.Serial == stuck {
			t.Errorf("the stopped pass of serial %d published an event: %+v", stuck, e.State)
		}
	}
}

// TestDownloadProgressEvents is issue 14.7 on a running node: a download
// that takes more than a couple of seconds publishes "downloading" state
// events with bytes done, total and rate, before the install event.
func TestDownloadProgressEvents(t *testing.T) {
	n := newE2ENode(t)
	a := buildArchive(t, n.files, "web", "1.0.0", recordingMachine("web", "1.0.0", "one", ""))
	release := make(chan struct{})
	half := len(a.data) / 2
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(a.data)))
		_, _ = w.Write(a.data[:half])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(a.data[half:])
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	entry := a.entry("")
	entry.Source = slow.URL + "/web.tar.gz"
	n.start()
	env, serial := n.seal(t, entry)
	mark := n.events.mark()
	n.put(t, env)

	var got machineswatcher.ProgressState
	n.events.waitEvent(t, mark, "download progress", func(e seenEvent) bool {
		if e.subject != agent.WatcherStateSubject("machines") {
			return false
		}
		var st machineswatcher.ProgressState
		if e.ev.DataAs(&st) != nil || st.PreviousOutcome != "downloading" {
			return false
		}
		got = st
		return true
	})
	close(release)
	if got.Download.Machine != "web" || got.Download.Done != int64(half) || got.Download.Total != int64(len(a.data)) || got.Download.Rate <= 0 {
		t.Errorf("progress event = %+v, want web at %d of %d bytes with a rate", got, half, len(a.data))
	}
	if got.Serial != serial || got.Format != "v2" || len(got.Digest) != 64 {
		t.Errorf("progress event = %+v, want it to name the spec being applied, serial %d", got, serial)
	}
	ev := n.events.waitMachines(t, mark, func(e machinesEvent) bool {
		return e.State.Serial == serial && e.State.PreviousOutcome != "downloading"
	})
	if r, ok := ev.result("web"); !ok || r.Outcome != manager.EntryInstalled {
		t.Fatalf("web = %+v, want installed", r)
	}
}
