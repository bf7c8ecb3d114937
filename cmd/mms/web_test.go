package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// TestWebRefusesRemoteWithoutTheFlag: a --listen beyond loopback is
// refused, saying what it would expose, before anything connects.
func TestWebRefusesRemoteWithoutTheFlag(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":8080", "192.0.2.1:8080", "ops.example.net:8080"} {
		r := mms(t, "", "web", "--listen", listen, "--server", "nats://127.0.0.1:1")
		want := "mms: --listen " + listen + " is not a loopback address: anyone who can reach it reads, without logging in, every node's status"
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "Give --allow-remote to do that on purpose") || r.stdout != "" {
			t.Errorf("mms web --listen %s = exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q", listen, r.code, r.stdout, r.stderr, want)
		}
	}
}

// webPagePattern finds the URL mms web prints.
var webPagePattern = regexp.MustCompile(`^mms web: the fleet page is at (http://127\.0\.0\.1:\d+/) \(read-only; reading MACHINES_STATUS and MACHINES/machines on nats://`)

// startWeb runs mms web with args in the background and returns its URL
// and stderr.
func startWeb(t *testing.T, args ...string) (string, *syncbuf.Buffer) {
	t.Helper()
	out, errOut, _ := runUntil(t, append([]string{"web"}, args...)...)
	var url string
	natstest.Eventually(t, e2eTimeout, func() error {
		m := webPagePattern.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Errorf("no URL yet; stdout %q, stderr %q", out.String(), errOut.String())
		}
		url = m[1]
		return nil
	})
	return url, errOut
}

// TestWebServes: mms web prints the page's URL and serves it; on loopback
// it refuses a request naming another host (DNS rebinding), with
// --allow-remote it serves any and warns on stderr what it exposes.
func TestWebServes(t *testing.T) {
	srv := natstest.RunJetStream(t)
	statusOf := func(url, host string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"api/view", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	local, errOut := startWeb(t, "--listen", "127.0.0.1:0", "--server", srv.ClientURL())
	if got := statusOf(local, ""); got != http.StatusOK {
		t.Errorf("GET %sapi/view = %d, want 200", local, got)
	}
	if got := statusOf(local, "fleet.example.net"); got != http.StatusMisdirectedRequest {
		t.Errorf("GET %sapi/view naming fleet.example.net = %d, want 421", local, got)
	}
	if strings.Contains(errOut.String(), "WARNING") {
		t.Errorf("mms web on loopback warned:\n%s", errOut)
	}

	remote, errOut := startWeb(t, "--listen", "0.0.0.0:0", "--allow-remote", "--server", srv.ClientURL())
	if got := statusOf(remote, "fleet.example.net"); got != http.StatusOK {
		t.Errorf("GET %sapi/view naming fleet.example.net with --allow-remote = %d, want 200", remote, got)
	}
	if want := "mms web: WARNING: 0.0.0.0:"; !strings.Contains(errOut.String(), want) || !strings.Contains(errOut.String(), "is beyond loopback: anyone who can reach it reads, without logging in") {
		t.Errorf("mms web --allow-remote stderr:\n%s\nwant the warning %q…", errOut, want)
	}
}
