package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/fleet"
)

// keepAlive is how often an idle stream sends a comment, so proxies and
// the browser see it is alive.
const keepAlive = 15 * time.Second

// writeTimeout bounds one write to a stream: a page that stopped reading
// loses its stream.
const writeTimeout = 30 * time.Second

// stream is one server-sent events response.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// openStream starts a server-sent events response, or answers 503 and
// returns nil when MaxStreams streams are open; release ends it.
func (s *Server) openStream(w http.ResponseWriter) (st *stream, release func()) {
	select {
	case s.streams <- struct{}{}:
	default:
		http.Error(w, "too many live streams open on this server; close some pages", http.StatusServiceUnavailable)
		return nil, nil
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st = &stream{w: w, rc: http.NewResponseController(w)}
	return st, func() { <-s.streams }
}

// send writes one event of type kind with data (one line of JSON).
func (st *stream) send(kind string, id uint64, data []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	var b strings.Builder
	b.WriteString("event: " + kind + "\n")
	if id > 0 {
		b.WriteString("id: " + strconv.FormatUint(id, 10) + "\n")
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	if _, err := st.w.Write([]byte(b.String())); err != nil {
		return err
	}
	return st.rc.Flush()
}

// ping writes a comment line.
func (st *stream) ping() error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := st.w.Write([]byte(": ping\n\n")); err != nil {
		return err
	}
	return st.rc.Flush()
}

// serveUpdates streams the fleet view ("view" events), or with ?node= one
// node's page ("node" events), now and after every change.
func (s *Server) serveUpdates(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	st, release := s.openStream(w)
	if st == nil {
		return
	}
	defer release()
	ctx := r.Context()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	var sent uint64
	first := true
	for {
		snap, next := s.current()
		if snap != nil && (first || snap.seq != sent) {
			var err error
			if node != "" {
				var b []byte
				if b, err = json.Marshal(s.nodePage(snap, node)); err == nil {
					err = st.send("node", snap.seq+1, b)
				}
			} else {
				err = st.send("view", snap.seq+1, snap.page)
			}
			if err != nil {
				return
			}
			first, sent = false, snap.seq
		}
		select {
		case <-ctx.Done():
			return
		case <-next:
		case <-tick.C:
			if st.ping() != nil {
				return
			}
		}
	}
}

// eventQuery is what /api/events asks for.
type eventQuery struct {
	filter fleet.EventFilter
	since  time.Duration
}

// maxSince caps ?since=: the stream keeps what it keeps, but a replay of
// weeks would flood the page.
const maxSince = 7 * 24 * time.Hour

// parseEventQuery reads ?identity=, ?machine=, ?type= and ?since= (a Go
// duration: 90s, 15m, 2h).
func parseEventQuery(raw string) (eventQuery, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return eventQuery{}, err
	}
	q := eventQuery{filter: fleet.EventFilter{Machine: v.Get("machine"), Type: v.Get("type")}}
	if id := v.Get("identity"); id != "" {
		// The page asks for one node's events: that identity exactly
		// (EventFilter takes a regular expression, as --identity does).
		q.filter.Identity = "^" + regexp.QuoteMeta(id) + "$"
	}
	if since := v.Get("since"); since != "" {
		d, err := time.ParseDuration(since)
		switch {
		case err != nil:
			return eventQuery{}, fmt.Errorf("since %q: not a duration such as 90s, 15m or 2h", since)
		case d < 0:
			return eventQuery{}, fmt.Errorf("since %q: must not be negative", since)
		case d > maxSince:
			return eventQuery{}, fmt.Errorf("since %q: at most %v", since, maxSince)
		}
		q.since = d
	}
	return q, nil
}

// pageEvent is one machine event as the events page shows it.
type pageEvent struct {
	Time       time.Time `json:"time"`
	Identity   string    `json:"identity"`
	Machine    string    `json:"machine"`
	Transition bool      `json:"transition"`
	// Type is the watcher type of a state event, "transition" for a
	// transition.
	Type string `json:"type"`
	// What is what happened and why (fleet.Event.What); Line the line
	// `mms events` prints.
	What string `json:"what"`
	Line string `json:"line"`
}

// serveEvents streams the machine events that pass the query's filter
// ("event" events): those of the last ?since= first when asked, then new
// ones. A replay that cannot be set up is one "failure" event.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	q, err := parseEventQuery(r.URL.RawQuery)
	if err == nil {
		q.filter, err = q.filter.Compile()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st, release := s.openStream(w)
	if st == nil {
		return
	}
	defer release()
	ctx := r.Context()
	msgs := make(chan *nats.Msg, 256)
	stop, err := fleet.SubscribeEvents(ctx, s.cfg.Conn, q.since, s.cfg.Timeout, msgs)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, fleet.ErrNoEventHistory) {
			msg += "; ask without since to follow live events"
		}
		b, _ := json.Marshal(map[string]string{"error": msg})
		_ = st.send("failure", 0, b)
		return
	}
	defer stop()
	if err := st.send("ready", 0, []byte(`{}`)); err != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if st.ping() != nil {
				return
			}
		case m := <-msgs:
			ev, err := fleet.DecodeEvent(m.Data)
			if err != nil {
				s.cfg.Log.Debug("skipping an unreadable event", "subject", m.Subject, "error", err)
				continue
			}
			if !q.filter.Match(ev.Info) {
				continue
			}
			i := ev.Info
			kind := i.WatcherType
			if i.Transition {
				kind = fleet.TransitionType
			}
			b, err := json.Marshal(pageEvent{Time: i.Time, Identity: i.Identity, Machine: i.Machine, Transition: i.Transition, Type: kind, What: ev.What(), Line: ev.Line()})
			if err != nil {
				continue
			}
			if st.send("event", 0, b) != nil {
				return
			}
		}
	}
}
