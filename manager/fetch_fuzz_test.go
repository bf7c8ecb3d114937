package manager

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzNextHop checks the redirect policy on arbitrary Location headers: an
// accepted hop is http(s) with a host and no user info, never goes from
// https to http, and never to http unless allowed; refusals never echo
// user info.
func FuzzNextHop(f *testing.F) {
	for _, loc := range []string{"b.tgz", "/x/b.tgz#frag", "https://cdn.example/b", "http://cdn.example/b?token=1",
		"https://u:p@cdn.example/b", "file:///etc/passwd", "", "https://[::1", "//other.example/x", "HTTP://cdn.example/b",
		"https://cdn.example:99999/b", "\\\\evil", "https://cdn.example/%2e%2e/b", "javascript:alert(1)"} {
		f.Add("https://files.example/a/web.tgz?sig=1", loc, false)
		f.Add("http://files.example/a/web.tgz", loc, true)
	}
	f.Fuzz(func(t *testing.T, from, location string, allowHTTP bool) {
		cur, err := url.Parse(from)
		if err != nil || (cur.Scheme != "https" && cur.Scheme != "http") || cur.Host == "" || cur.User != nil {
			return
		}
		next, err := nextHop(cur, location, allowHTTP)
		if err != nil {
			// The URL must not be shown with its user info. (The user info
			// may appear elsewhere by coincidence: in the host or path.)
			if u, perr := cur.Parse(location); perr == nil && u.User.String() != "" {
				if shown := u.Scheme + "://" + u.User.String() + "@" + u.Host; strings.Contains(err.Error(), shown) {
					t.Fatalf("nextHop(%q) error %q shows the user info", location, err)
				}
			}
			return
		}
		switch {
		case next.User != nil:
			t.Fatalf("nextHop(%q) = %s with user info", location, next)
		case next.Scheme != "https" && next.Scheme != "http":
			t.Fatalf("nextHop(%q) = scheme %q", location, next.Scheme)
		case next.Scheme == "http" && (cur.Scheme == "https" || !allowHTTP):
			t.Fatalf("nextHop(%q) from %s downgrades to %s (allowHTTP %v)", location, cur, next, allowHTTP)
		case next.Host == "":
			t.Fatalf("nextHop(%q) = %s without a host", location, next)
		}
	})
}
