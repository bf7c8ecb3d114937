package machineswatcher

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mms-io/mms/internal/syncbuf"
	"github.com/mms-io/mms/manager"
)

// TestCheckRetriesFailedEntries is issue 14.6 at the watcher: a pass with
// a failed download asks for the next check after a growing, jittered
// backoff (not the 5-minute interval) and logs why; a clean pass, or a new
// spec, starts over; an invalid entry is not retried early.
func TestCheckRetriesFailedEntries(t *testing.T) {
	n := newNode(t, `{"data_item":"spec","purge_unknown":true,"public_keys":["KEY"]}`)
	logs := &syncbuf.Buffer{}
	n.w.log = slog.New(slog.NewTextHandler(logs, nil))
	n.inst.fail["db"] = errors.New("fetch: HTTP 404 from repo.example.net")
	check := func(want int) {
		t.Helper()
		res, err := n.w.Check(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if want == 0 {
			if res.After != 0 {
				t.Fatalf("Check().After = %v, want 0 (the interval)", res.After)
			}
			return
		}
		if hi := min(RetryFirst<<(want-1), RetryMax); res.After < hi/2 || res.After > hi {
			t.Fatalf("retry %d: Check().After = %v, want within [%v, %v]", want, res.After, hi/2, hi)
		}
	}
	if err := n.data.Put("spec", string(n.envelope(1, "web", "db"))); err != nil {
		t.Fatal(err)
	}
	check(1)
	check(2)
	check(3)
	if !strings.Contains(logs.String(), "retrying failed entries") || !strings.Contains(logs.String(), "db: install: fetch: HTTP 404") {
		t.Errorf("the retry is not logged with its reason:\n%s", logs)
	}
	// A new spec starts the backoff over.
	if err := n.data.Put("spec", string(n.envelope(2, "web", "db"))); err != nil {
		t.Fatal(err)
	}
	check(1)
	// Fixed: back to the interval.
	delete(n.inst.fail, "db")
	check(0)
	// An invalid entry waits for a new spec, not a retry.
	if err := n.data.Put("spec", string(badEntry(t, n))); err != nil {
		t.Fatal(err)
	}
	check(0)
}

// statusRecorder is a status reporter that takes progress too, as the
// agent's status recorder does.
type statusRecorder struct {
	mu       sync.Mutex
	progress []string
}

func (s *statusRecorder) ReportPass(manager.PassReport) {}

func (s *statusRecorder) ReportProgress(name string, done, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.progress = append(s.progress, fmt.Sprintf("%s %d/%d", name, done, total))
}

// TestProgressReachesStatusAndEvents is issue 14.7 at the watcher: the
// installer gets a progress reporter that feeds the status recorder and
// publishes a "downloading" state event with the rate.
func TestProgressReachesStatusAndEvents(t *testing.T) {
	rec := &statusRecorder{}
	var events []ProgressState
	w := &Watcher{Status: rec, reportState: func(state any) { events = append(events, state.(ProgressState)) }}
	p := w.progressReporter()
	if p == nil {
		t.Fatal("progressReporter() = nil with a status recorder and events")
	}
	w.progress.passDone([]string{"web"})
	p.ReportProgress("db", 1000, 4000)
	p.ReportProgress("db", 4000, 4000)
	if want := []string{"db 1000/4000", "db 4000/4000"}; strings.Join(rec.progress, ",") != strings.Join(want, ",") {
		t.Errorf("status got %v, want %v", rec.progress, want)
	}
	if len(events) != 2 {
		t.Fatalf("events = %+v, want 2", events)
	}
	first := events[0]
	if first.PreviousOutcome != "downloading" || first.Download.Machine != "db" || first.Download.Done != 1000 || first.Download.Total != 4000 ||
		first.Download.Rate <= 0 || strings.Join(first.Machines, ",") != "web" {
		t.Errorf("first progress event = %+v", first)
	}
	if none := (&Watcher{}).progressReporter(); none != nil {
		t.Errorf("progressReporter() with nowhere to report = %v, want nil", none)
	}
}
