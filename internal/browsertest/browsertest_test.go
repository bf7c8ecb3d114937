package browsertest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mms-io/mms/internal/browsertest"
)

// TestNewRendersAPage loads a page that writes its text with a script and
// reads the text back: the browser starts, runs JavaScript and renders.
func TestNewRendersAPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			fmt.Fprint(w, `<!doctype html><title>t</title><p id="p">static</p><script src="/s.js"></script>`)
		case "/s.js":
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.getElementById("p").textContent = "from " + "script";`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := browsertest.New(t, 800, 600)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#p`)))
	if err != nil {
		t.Fatal(err)
	}
	if got != "from script" {
		t.Errorf("text of #p = %q, want %q", got, "from script")
	}
}

// TestNewLeavesNoTempFiles runs a browser in a test of its own with
// $TMPDIR pointing at an empty directory: when that test ends the
// directory is empty again (Chromium's singleton socket directory went
// with the test's own temporary directory).
func TestNewLeavesNoTempFiles(t *testing.T) {
	tmp, err := os.MkdirTemp("", "bt") // short: Chromium's socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	t.Setenv("TMPDIR", tmp)
	t.Run("browser", func(t *testing.T) {
		ctx := browsertest.New(t, 400, 300)
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatal(err)
		}
	})
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in $TMPDIR after the browser's test ended: %s", e.Name())
	}
}
