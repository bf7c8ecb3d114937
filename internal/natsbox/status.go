package natsbox

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// MaxViolations bounds the distinct permission violations a Status keeps; the
// oldest is dropped first.
const MaxViolations = 16

// Status records the health of a connection made by Connect. It is safe for
// concurrent use. Connect makes it; the zero value is not usable.
type Status struct {
	mu    sync.Mutex
	state ConnState
	hooks map[int]func()
	next  int
	kick  chan struct{} // capacity 1: a (re)connect happened, run hooks
}

// ConnState is a point-in-time copy of a Status, ready for a status document.
type ConnState struct {
	// Connected is true while the client has a live server connection.
	Connected bool `json:"connected"`
	// Closed is true once the connection is closed for good.
	Closed bool `json:"closed,omitempty"`
	// URL is the server the client is (or was last) connected to, with any
	// password redacted; Server is that server's name.
	URL    string `json:"url,omitempty"`
	Server string `json:"server,omitempty"`
	// ConnectedAt and DisconnectedAt are the last transitions.
	ConnectedAt    time.Time `json:"connected_at,omitzero"`
	DisconnectedAt time.Time `json:"disconnected_at,omitzero"`
	// Reconnects and Disconnects count transitions since Connect.
	Reconnects  int `json:"reconnects"`
	Disconnects int `json:"disconnects"`
	// LastError is the last error the connection reported (a failed attempt,
	// a disconnect reason, an asynchronous server error), and when.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// PermissionViolations are the distinct permission errors the server
	// reported, most recent last, at most MaxViolations. A denied publish or
	// request otherwise only looks like a timeout to the caller.
	PermissionViolations []Violation `json:"permission_violations,omitempty"`
}

// Violation is one distinct permission error reported by the server.
type Violation struct {
	// Message is the server's text, e.g.
	// `Permissions Violation for Publish to "machines.x"`.
	Message string    `json:"message"`
	Count   int       `json:"count"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
}

func newStatus() *Status {
	return &Status{hooks: make(map[int]func()), kick: make(chan struct{}, 1)}
}

// Snapshot returns a copy of the current state.
func (s *Status) Snapshot() ConnState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.PermissionViolations = slices.Clone(s.state.PermissionViolations)
	return st
}

// OnReconnect registers f to run after every reconnect, and after the first
// connection when Connect returned before one was made (RetryOnFailedConnect).
// Use it to re-create what a reconnect does not restore by itself, such as a
// KV watch. It returns a function that removes f.
//
// Hooks run one after another on a goroutine of the Client, never on the
// NATS callback goroutine, so they may make NATS requests; but a hook that
// blocks delays the others, so bound its work with a timeout. Reconnects that
// happen while hooks are running are coalesced into one more run.
func (s *Status) OnReconnect(f func()) (remove func()) {
	if f == nil {
		return func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.hooks[id] = f
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.hooks, id)
	}
}

// runHooks calls the registered hooks in registration order.
func (s *Status) runHooks() {
	s.mu.Lock()
	ids := make([]int, 0, len(s.hooks))
	for id := range s.hooks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	fs := make([]func(), 0, len(ids))
	for _, id := range ids {
		fs = append(fs, s.hooks[id])
	}
	s.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func (s *Status) connected(nc *nats.Conn, reconnect bool) {
	s.mu.Lock()
	s.state.Connected = true
	s.state.URL = nc.ConnectedUrlRedacted()
	s.state.Server = nc.ConnectedServerName()
	s.state.ConnectedAt = time.Now()
	if reconnect {
		s.state.Reconnects++
	}
	s.mu.Unlock()
}

// signalHooks asks the dispatcher to run the hooks once more.
func (s *Status) signalHooks() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Status) disconnected(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Connected {
		s.state.Disconnects++
		s.state.DisconnectedAt = time.Now()
	}
	s.state.Connected = false
	if err != nil {
		s.setErrorLocked(err)
	}
}

func (s *Status) closed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Connected = false
	s.state.Closed = true
	if err != nil {
		s.setErrorLocked(err)
	}
}

// recordError records an error; a permission violation is also kept in the
// bounded, de-duplicated list of violations.
func (s *Status) recordError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setErrorLocked(err)
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	now := s.state.LastErrorAt
	msg := violationText(err)
	vs := s.state.PermissionViolations
	if i := slices.IndexFunc(vs, func(v Violation) bool { return v.Message == msg }); i >= 0 {
		v := vs[i]
		v.Count++
		v.Last = now
		vs = append(slices.Delete(vs, i, i+1), v)
	} else {
		vs = append(vs, Violation{Message: msg, Count: 1, First: now, Last: now})
		if len(vs) > MaxViolations {
			vs = slices.Delete(vs, 0, len(vs)-MaxViolations)
		}
	}
	s.state.PermissionViolations = vs
}

func (s *Status) setErrorLocked(err error) {
	s.state.LastError = err.Error()
	s.state.LastErrorAt = time.Now()
}

// violationText is the server's own words for a permission error, without
// the client library's "nats: permissions violation: " prefix.
func violationText(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, nats.ErrPermissionViolation.Error()+": "); ok {
		return rest
	}
	return msg
}
