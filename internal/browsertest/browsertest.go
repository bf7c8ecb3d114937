// Package browsertest drives a real headless Chromium for tests, with
// chromedp: the page is checked the way a person sees it, not through a
// fake DOM. Chromium comes from the system (Debian's chromium package;
// .ci/run installs it). Where none is installed a test skips, loudly,
// unless $MMS_REQUIRE_BROWSER is set (CI sets it once it installed one),
// where the test fails instead.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// Browsers are the commands tried, in order, when $MMS_CHROMIUM is unset.
var browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of the Chromium to drive: $MMS_CHROMIUM, else the
// first of chromium, chromium-browser, google-chrome on $PATH.
func Find() (string, error) {
	if p := os.Getenv("MMS_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("find $MMS_CHROMIUM %s: %w", p, err)
		}
		return p, nil
	}
	for _, b := range browsers {
		if p, err := exec.LookPath(b); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium, chromium-browser or google-chrome on $PATH (Debian: apt-get install chromium; or set $MMS_CHROMIUM)")
}

// Flags are the command-line flags Chromium runs with: headless, without
// a sandbox (tests run as root in containers), and without every
// background fetch — on a closed network those hang the browser.
var Flags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("headless", true),
	chromedp.Flag("no-sandbox", true),
	chromedp.Flag("disable-gpu", true),
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("no-first-run", true),
	chromedp.Flag("no-default-browser-check", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("disable-extensions", true),
	chromedp.Flag("disable-dev-shm-usage", true),
	chromedp.Flag("hide-scrollbars", true),
	chromedp.Flag("mute-audio", true),
}

// New starts a headless Chromium with a fresh profile under tb.TempDir()
// and a temporary directory of its own, both removed when the test ends,
// and a window of width × height, and returns the context of its first
// tab for chromedp.Run. The browser stops when the test ends. Without a
// browser the test skips, saying so on stderr too, or fails when
// $MMS_REQUIRE_BROWSER is set.
func New(tb testing.TB, width, height int) context.Context {
	tb.Helper()
	path, err := Find()
	if err != nil {
		if os.Getenv("MMS_REQUIRE_BROWSER") != "" {
			tb.Fatalf("browsertest: %v, and $MMS_REQUIRE_BROWSER is set", err)
		}
		msg := fmt.Sprintf("SKIPPED %s: it needs a real browser: %v", tb.Name(), err)
		fmt.Fprintln(os.Stderr, "browsertest: "+msg)
		tb.Skip(msg)
	}
	// Chromium makes a directory for its singleton socket under $TMPDIR
	// and leaves it there: give it one that goes when the browser has
	// stopped (cleanups run last first), short because a socket's path
	// fits in 107 bytes, which tb.TempDir() can exceed.
	tmp, err := os.MkdirTemp("", "mms-chromium-")
	if err != nil {
		tb.Fatalf("browsertest: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(tmp) })
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.Env("TMPDIR=" + tmp),
		chromedp.WindowSize(width, height),
	}, Flags...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(tb.Logf))
	tb.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("browsertest: start %s: %v", path, err)
	}
	return ctx
}

// Console collects what the pages of a tab write to the console: calls of
// the console API, uncaught exceptions, and the browser's log (where a
// Content Security Policy violation lands).
type Console struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

// CollectConsole starts collecting the console of ctx's tab until the test
// ends.
func CollectConsole(tb testing.TB, ctx context.Context) *Console {
	tb.Helper()
	c := &Console{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

// Problems returns the errors, warnings and exceptions collected so far,
// one line each.
func (c *Console) Problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		switch m.Type {
		case chromedp.ConsoleError, chromedp.ConsoleException, chromedp.ConsoleWarning:
			out = append(out, m.String())
		}
	}
	return out
}
