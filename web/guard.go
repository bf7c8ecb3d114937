package web

import (
	"net"
	"net/http"
	"strings"
)

// contentSecurityPolicy lets the page load its own scripts, styles,
// images and streams and nothing else: no inline code, no other origin,
// no frames, no forms; Trusted Types make any write of a string as HTML
// fail, so node text can only land on the page as text.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// secure adds the security headers to every answer of h, answers only GET
// and HEAD, and, unless remote, only requests that name a loopback host:
// a page elsewhere that rebinds its DNS name to 127.0.0.1 gets 421.
func secure(h http.Handler, remote bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		hd.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			http.Error(w, "the fleet page is read-only: only GET and HEAD", http.StatusMethodNotAllowed)
			return
		}
		if !remote && !loopbackHost(r.Host) {
			http.Error(w, "this server answers only requests to a loopback address (localhost, 127.0.0.1, [::1]); start mms web with --allow-remote to serve others", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine's
// loopback: localhost (or a name under it) or a loopback IP, any port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Loopback reports whether a listen address ("127.0.0.1:8080",
// "localhost:0", "[::1]:8080") binds only the loopback interface. An
// empty host (":8080") binds every interface; a name other than
// localhost may resolve to anything: neither is loopback.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	return loopbackHost(host)
}
