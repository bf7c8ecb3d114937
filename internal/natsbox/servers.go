package natsbox

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ParseServers splits a comma-separated list of NATS server URLs, as given to
// a --server flag or found in a context's url, trims spaces and drops empty
// entries. Each entry is a URL with scheme nats, tls, ws or wss, or a bare
// host:port (nats:// is implied). Every bad entry is reported, by position.
// An empty list returns nil and no error.
func ParseServers(list string) ([]string, error) {
	var servers []string
	var errs []error
	for i, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if shown, err := checkServerURL(entry); err != nil {
			errs = append(errs, fmt.Errorf("server %d%s: %w", i+1, shown, err))
			continue
		}
		servers = append(servers, entry)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return servers, nil
}

// checkServerURL reports why entry is not a usable server URL, and how to
// show the entry in that error: " (url)" with any user information redacted, or
// nothing when entry does not even parse (it might hold a secret).
func checkServerURL(entry string) (shown string, err error) {
	raw := entry
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a URL")
	}
	shown = " (" + redactURL(entry) + ")"
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return shown, fmt.Errorf("scheme %q: want nats, tls, ws or wss", u.Scheme)
	}
	if u.Hostname() == "" {
		return shown, errors.New("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return shown, fmt.Errorf("port %q: want 1-65535", p)
		}
	}
	if strings.ContainsAny(entry, " \t\r\n") {
		return shown, errors.New("contains white space")
	}
	return shown, nil
}

// redactURL shows a server URL without its user information, which may be a
// password or a token.
func redactURL(entry string) string {
	raw := entry
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	return u.String()
}
