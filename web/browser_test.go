package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mms-io/mms/internal/browsertest"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/web"
)

// pollJS polls a JavaScript expression in the page until it returns
// want, failing the test after 30s with the last value and what the page
// showed then (its address and its live connection's state), so a failure
// says whether the page had its data at all.
func pollJS(t testing.TB, ctx context.Context, expr, want string) {
	t.Helper()
	var got string
	natstest.Eventually(t, 30*time.Second, func() error {
		var err error
		if got, err = chromedp.Run(ctx, chromedp.Evaluate[string](expr)); err != nil {
			return err
		}
		if got != want {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](pageState))
			return fmt.Errorf("%s = %q, want %q (page: %s)", expr, got, want, page)
		}
		return nil
	})
}

// pageState describes the page for a failed pollJS.
const pageState = `location.href + ', connection ' + JSON.stringify((document.querySelector('#conn') || {}).textContent) + ', ' + document.querySelectorAll('#nodes tbody tr[data-identity]').length + ' node rows'`

// logConsoleOnFailure logs what the page wrote to its console when the
// test fails before it checks the console itself.
func logConsoleOnFailure(t *testing.T, console *browsertest.Console) {
	t.Cleanup(func() {
		switch p := console.Problems(); {
		case !t.Failed():
		case len(p) == 0:
			t.Log("the page wrote no error or warning to its console")
		default:
			t.Logf("the page's console:\n%s", strings.Join(p, "\n"))
		}
	})
}

// TestPageInBrowser loads the fleet page in headless Chromium: hostile
// text from a node lands on the page as text, the filters and the sort
// work and go into the URL, a document written while the page is open
// shows up, a rollout's pause counts down, and the page breaks no rule of
// its Content Security Policy.
func TestPageInBrowser(t *testing.T) {
	f := newTestFleet(t)
	now := time.Now()
	ids, wave1, failing := f.halted(6, now)
	hostile := `<img src=x id=pwned onerror="document.title='pwned'">`
	d := f.doc(hostile, now)
	d.LastError = `<script>document.title='pwned'</script>`
	f.putDoc(d)
	url := f.serve(web.Config{})
	ctx := browsertest.New(t, 1400, 900)
	console := browsertest.CollectConsole(t, ctx)
	logConsoleOnFailure(t, console)

	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatal(err)
	}
	rows := `String(document.querySelectorAll('#nodes tbody tr[data-identity]').length)`
	pollJS(t, ctx, rows, "7")
	pollJS(t, ctx, `String(!!document.querySelector('#pwned')) + ' ' + document.title + ' ' + [...document.querySelectorAll('#nodes td.id')].some(td => td.textContent === `+"`"+hostile+"`"+`)`,
		"false mms fleet true")

	// Filter by identity, then by flag; both go into the URL.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#q"), strings.TrimSuffix(failing, ".example.net"))); err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, `[...document.querySelectorAll('#nodes tbody tr[data-identity]')].map(r => r.dataset.identity).join(',') + ' ' + location.search`,
		failing+" ?q="+strings.TrimSuffix(failing, ".example.net"))
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/?flag=clean")); err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, `[...document.querySelectorAll('#nodes tbody tr[data-identity]')].map(r => r.dataset.identity).join(',') + ' ' + document.querySelector('#flag').value`,
		hostile+" clean")

	// Sort by identity, descending: a click on the header.
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/?flag=failed"), chromedp.Click(chromedp.CSS(`#nodes th[data-key=identity]`))); err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, `[...document.querySelectorAll('#nodes tbody tr[data-identity]')].map(r => r.dataset.identity).join(',')`,
		strings.Join([]string{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}, ","))

	// A node written while the page is open appears without a reload.
	f.putDoc(f.doc("late.example.net", time.Now()))
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, rows, "8")
	f.putDoc(f.doc("later.example.net", time.Now()))
	pollJS(t, ctx, rows, "9")

	// The node of wave 1 runs 2.0.0 healthy now: the rollout is no longer
	// halted, and the pause before wave 2 counts down on the page.
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/rollouts")); err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, `document.querySelector('.rollout[data-machine="web"] .badge').textContent`, "halted")
	web2 := f.op.Spec.Machines[0]
	d = f.doc(wave1, time.Now())
	d.Entries = []nodestatus.Entry{{Name: "web", Outcome: "updated", Version: "2.0.0", Checksum: web2.Checksum, Installed: web2.Checksum, Health: "healthy", HealthyAt: time.Now()}}
	f.putDoc(d)
	pollJS(t, ctx, `(() => { const c = document.querySelector('.rollout[data-machine="web"] .countdown'); return c && /^next wave in 4m [0-9]+s$/.test(c.textContent) ? 'counting' : String(c && c.textContent); })()`, "counting")
	pollJS(t, ctx, `String(/^under way: wave \d of 3, starting in 4m\d+s \(the pause after wave \d\)$/.test(document.querySelector('.rollout[data-machine="web"] .status .line').textContent))`, "true")

	if p := console.Problems(); len(p) > 0 {
		t.Errorf("the page wrote errors to the console:\n%s", strings.Join(p, "\n"))
	}
}

// BenchmarkFirstRender1000 measures the time to first render of the fleet
// page with 1,000 status documents: from the start of the navigation to
// the frame after the table of 1,000 nodes is drawn (the page's
// "mms:first-render" mark), in headless Chromium, the server on loopback.
// Each iteration loads the page afresh.
func BenchmarkFirstRender1000(b *testing.B) {
	const nodes = 1000
	f := newTestFleet(b)
	f.halted(nodes, time.Now())
	url := f.serve(web.Config{})
	ctx := browsertest.New(b, 1400, 900)
	var first, all float64
	b.ResetTimer()
	for b.Loop() {
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(url+"/")); err != nil {
			b.Fatal(err)
		}
		mark := func(name string) float64 {
			b.Helper()
			ms, err := chromedp.Run(ctx, chromedp.Poll[float64](`(() => { const m = performance.getEntriesByName('`+name+`')[0]; return m ? m.startTime : 0; })()`,
				chromedp.WithPollingTimeout(60*time.Second)))
			if err != nil {
				b.Fatalf("wait for the page's mark %s: %v", name, err)
			}
			return ms
		}
		first += mark("mms:first-render")
		all += mark("mms:all-rows")
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#nodes tbody tr[data-identity]').length`))
		if err != nil || n != nodes {
			b.Fatalf("rows drawn = %d (%v), want %d", n, err, nodes)
		}
		marks, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(performance.getEntriesByType('mark').map(m => [m.name, Math.round(m.startTime)]).concat([['dcl', Math.round(performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd)]]))`))
		b.Log(marks)
	}
	b.ReportMetric(first/float64(b.N), "ms/first-render")
	b.ReportMetric(all/float64(b.N), "ms/all-rows")
	_, body := get(b, "GET", url+"/api/view", "")
	b.ReportMetric(float64(len(body))/1024, "KiB/view")
}
