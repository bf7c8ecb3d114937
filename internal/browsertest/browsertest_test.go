package browsertest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
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
