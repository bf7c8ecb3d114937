package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mms-io/mms/spec"
)

// userAgent identifies the agent to archive servers.
const userAgent = "mms-agent"

// statusError is a response other than 200 OK. It names the host only:
// never the URL's user info, path or query.
type statusError struct {
	code int
	host string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d from %s", e.code, e.host) }

// openHTTP makes one attempt at fetching u: it follows redirects by hand,
// applying cred only while the request goes to u's scheme and host, and
// returns the body of the 200 OK response, capped and watched for stalls.
func (f *Fetcher) openHTTP(ctx context.Context, m spec.Machine, u *url.URL, cred *Credential) (io.ReadCloser, error) {
	limit, err := f.sizeCap(m)
	if err != nil {
		return nil, err
	}
	actx, att := f.startAttempt(ctx, m)
	cur := u
	for hops := 0; ; hops++ {
		resp, err := f.get(actx, cur, cred, u)
		if err != nil {
			err = att.failure(actx, err, "GET from "+cur.Host)
			att.end()
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			_ = resp.Body.Close() // never read: a server could drip it
			next, err := nextHop(cur, resp.Header.Get("Location"), f.cfg.AllowHTTP)
			if err == nil && hops+1 > MaxRedirects {
				err = fmt.Errorf("stopped after %d redirects", MaxRedirects)
			}
			if err != nil {
				att.end()
				return nil, err
			}
			if cred != nil && !sameOrigin(next, u) {
				f.log.Debug("not sending credentials to another origin after a redirect",
					"managed", m.Name, "from", u.Host, "to", next.Host)
			}
			cur = next
			continue
		default:
			att.end()
			_ = resp.Body.Close()
			var err error = &statusError{code: resp.StatusCode, host: cur.Host}
			if resp.StatusCode >= 500 {
				err = &transientError{err: err}
			}
			return nil, err
		}
		if resp.ContentLength >= 0 {
			// Refused at once: reading (even draining) the body of a
			// server that announces too much would wait on it.
			if err := limit.check(resp.ContentLength, "Content-Length"); err != nil {
				att.end()
				_ = resp.Body.Close()
				return nil, err
			}
			att.total.Store(resp.ContentLength)
		}
		att.responded()
		return &body{r: resp.Body, c: resp.Body, att: att, limit: limit, from: cur.Host,
			cause: func() error { return contextFailure(actx) }}, nil
	}
}

// get sends one GET for cur with the credential when cur is on origin's
// scheme and host.
func (f *Fetcher) get(ctx context.Context, cur *url.URL, cred *Credential, origin *url.URL) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cur.String(), nil)
	if err != nil {
		return nil, errors.New("cannot build the request")
	}
	req.Header.Set("User-Agent", userAgent)
	// The archive's own bytes are hashed: never let the transport
	// negotiate a Content-Encoding and decode it behind our back.
	req.Header.Set("Accept-Encoding", "identity")
	if cred != nil && sameOrigin(cur, origin) {
		cred.apply(req.Header)
	}
	return f.client.Do(req)
}

// nextHop resolves a redirect from cur to location and applies the
// redirect policy: only http(s), never from https to http, never to http
// unless allowed, never to a URL carrying user info.
func nextHop(cur *url.URL, location string, allowHTTP bool) (*url.URL, error) {
	if location == "" {
		return nil, fmt.Errorf("redirect from %s without a Location", cur.Host)
	}
	next, err := cur.Parse(location)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("redirect from %s to an invalid URL: %w", cur.Host, err)
	}
	next.Fragment, next.RawFragment = "", ""
	switch {
	case next.User != nil:
		return nil, fmt.Errorf("refusing redirect to a URL with credentials (%s)", redactURL(next))
	case next.Scheme == "http" && (cur.Scheme == "https" || !allowHTTP):
		return nil, fmt.Errorf("refusing redirect to %s", redactURL(next))
	case next.Scheme != "https" && next.Scheme != "http":
		return nil, fmt.Errorf("refusing redirect to scheme %q", next.Scheme)
	case next.Host == "":
		return nil, fmt.Errorf("refusing redirect to %s: no host", redactURL(next))
	}
	return next, nil
}

// sameOrigin reports whether a and b have the same scheme and host (with
// port, so https://h and https://h:443 count as different: credentials
// err on the side of not being sent).
func sameOrigin(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && strings.EqualFold(a.Host, b.Host)
}

var _ error = (*statusError)(nil)
