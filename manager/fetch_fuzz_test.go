package manager

import (
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
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

// FuzzDirectInfo checks the reading of an object's meta message, which
// comes from the object store's stream (whoever may write to the bucket
// wrote it): it never panics, and what it accepts is a live object with
// a chunk id, or a link.
func FuzzDirectInfo(f *testing.F) {
	for _, data := range []string{
		`{"name":"web.tgz","bucket":"ARCHIVES","nuid":"Xb5Yk0GcW2o8h6mRr3TqJd","size":420,"chunks":1,"digest":"SHA-256=abc","mtime":"2026-12-05T08:00:00Z"}`,
		`{"name":"web.tgz","nuid":"Xb5","size":0,"chunks":0,"deleted":true}`,
		`{"name":"link.tgz","options":{"link":{"bucket":"ARCHIVES","name":"web.tgz"}}}`,
		`{"name":"x","size":1}`,
		`{"nuid":"a","size":-1}`,
		`{"nuid":"a","size":1e30}`,
		`{"nuid":"a","chunks":"1"}`,
		`{"options":null,"nuid":""}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(data), "")
	}
	f.Add([]byte(nil), "404")
	f.Add([]byte(nil), "408")
	f.Add([]byte(`{"nuid":"a"}`), "200")
	f.Fuzz(func(t *testing.T, data []byte, status string) {
		msg := nats.NewMsg("_INBOX.x.y")
		msg.Data = data
		if status != "" {
			msg.Header.Set("Status", status)
		}
		info, err := directInfo(msg, "web.tgz")
		if err != nil {
			if info != (objectInfo{}) {
				t.Fatalf("directInfo failed (%v) and returned %+v", err, info)
			}
			return
		}
		if info.Deleted {
			t.Fatalf("directInfo accepted a deleted object: %+v", info)
		}
		if info.NUID == "" && !info.isLink() {
			t.Fatalf("directInfo accepted an object without a chunk id: %+v", info)
		}
	})
}
